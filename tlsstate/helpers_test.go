package tlsstate

import (
	"bytes"
	"crypto/tls"
	"errors"
	"sync"
	"testing"

	"github.com/moat-proxy/moat/internal/testpki"
)

// pki is generated once per test binary: a 600-SAN leaf under an
// intermediate (the > 28 KiB chain), a small leaf, and a client certificate.
type pki struct {
	ca, clientCA *testpki.CA
	large, small *testpki.Leaf
	client       *testpki.Leaf
}

var (
	pkiOnce sync.Once
	thePKI  pki
)

func testPKI(t testing.TB) pki {
	t.Helper()
	pkiOnce.Do(func() {
		ca, large := testpki.LargeChain(600)
		clientCA := testpki.NewCA()
		thePKI = pki{
			ca: ca, clientCA: clientCA, large: large,
			small:  ca.Issue("localhost", "127.0.0.1"),
			client: clientCA.IssueClient("moat-test-client"),
		}
	})
	return thePKI
}

// configs returns matching server and client configs for one TLS version.
func (p pki) configs(version uint16, leaf *testpki.Leaf, clientAuth bool) (srv, cli *tls.Config) {
	srv = &tls.Config{
		Certificates: []tls.Certificate{leaf.TLS()},
		MinVersion:   version, MaxVersion: version,
	}
	cli = &tls.Config{
		RootCAs: p.ca.Pool(), ServerName: "localhost",
		MinVersion: version, MaxVersion: version,
	}
	if clientAuth {
		srv.ClientAuth = tls.RequireAndVerifyClientCert
		srv.ClientCAs = p.clientCA.Pool()
		cli.Certificates = []tls.Certificate{p.client.TLS()}
	}
	return srv, cli
}

// link moves ciphertext between two engines through a window of at most
// `window` bytes per step, and counts what crossed.
type link struct {
	t      testing.TB
	a, b   *Engine
	window int
	steps  int
	moved  int
}

// move copies at most window bytes of from's Output into to, and reports
// whether anything moved.
func (l *link) move(from, to *Engine) bool {
	out := from.Output()
	if len(out) == 0 {
		return false
	}
	n := to.Feed(out[:min(len(out), l.window)])
	from.Consume(n)
	l.steps++
	l.moved += n
	return n > 0
}

// handshake drives both engines until both are Open, moving at most window
// bytes per step, and fails the test on any fatal error or a stall.
func (l *link) handshake() {
	l.t.Helper()
	for i := 0; ; i++ {
		ea, eb := l.a.Handshake(), l.b.Handshake()
		if ea == nil && eb == nil && l.a.Pending() == 0 && l.b.Pending() == 0 {
			return
		}
		for _, err := range []error{ea, eb} {
			if err != nil && !errors.Is(err, ErrWantRead) {
				l.t.Fatalf("handshake: %v (a=%v b=%v)", err, l.a.State(), l.b.State())
			}
		}
		if !l.move(l.a, l.b) && !l.move(l.b, l.a) && ea != nil && eb != nil {
			l.t.Fatalf("handshake stalled after %d steps: a=%v b=%v", i, ea, eb)
		}
	}
}

// send writes msg on from and reads it on to, flushing both ways so that
// read-path output (KeyUpdate, tickets) reaches the other side too.
func (l *link) send(from, to *Engine, msg []byte) {
	l.t.Helper()
	l.transfer(from, to, msg, msg)
}

// transfer writes rest on from and checks that to reads want, which is rest
// preceded by whatever from already queued.
func (l *link) transfer(from, to *Engine, rest, want []byte) {
	l.t.Helper()
	var got []byte
	buf := make([]byte, 4096)
	msg := want
	for idle := 0; len(got) < len(msg); {
		progress := false
		if len(rest) > 0 {
			n, err := from.Write(rest)
			if err != nil && !errors.Is(err, ErrWantWrite) && !errors.Is(err, ErrWantRead) {
				l.t.Fatalf("write: %v", err)
			}
			rest = rest[n:]
			progress = n > 0
		}
		if l.move(from, to) || l.move(to, from) {
			progress = true
		}
		n, err := to.Read(buf)
		if err != nil && !errors.Is(err, ErrWantRead) {
			l.t.Fatalf("read: %v", err)
		}
		got = append(got, buf[:n]...)
		if n > 0 || progress {
			idle = 0
		} else if idle++; idle > 3 {
			l.t.Fatalf("data stalled: %d of %d bytes", len(got), len(msg))
		}
	}
	if !bytes.Equal(got, msg) {
		l.t.Fatalf("data corrupted: got %d bytes, want %d", len(got), len(msg))
	}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}
