package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/moat-proxy/moat/internal/testpki"
)

// clientHello returns the first flight of a real crypto/tls client: a
// ClientHello record for ServerName "localhost".
func clientHello(t testing.TB) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go tls.Client(a, &tls.Config{ServerName: "localhost"}).Handshake()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// waitGauge polls /metrics until the sample of name satisfies ok, and
// returns it; it fails the test with the last value after d.
func (o *opsServer) waitGauge(t testing.TB, name string, d time.Duration, ok func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		v := value(o.metrics(t), name, nil)
		if ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after %s", name, v, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestIdleConnectionsHoldNoBuffer: whatever a connection sent before going
// quiet — nothing, part of a ClientHello, or a finished handshake, an echo
// and the first bytes of the next record — moat holds no TLS buffer for it
// while it waits. Before, every connection that had read nothing since its
// last wakeup kept a 64 KiB input buffer: 4,096 silent connections pinned
// 263 MB.
func TestIdleConnectionsHoldNoBuffer(t *testing.T) {
	const each = 200
	up := startUpstream(t, upperEcho)
	// Deadlines longer than the test: on a busy machine opening 600
	// connections can take longer than the 3 s ClientHello deadline.
	o := startOps(t, up.addr(), "--client-hello-timeout", "60s", "--handshake-timeout", "60s")
	hello := clientHello(t)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", o.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		return c
	}
	for i := 0; i < each; i++ {
		dial()                                               // silent
		if _, err := dial().Write(hello[:100]); err != nil { // part of a ClientHello
			t.Fatal(err)
		}
		raw := dial()
		tc := tls.Client(raw, &tls.Config{RootCAs: o.roots, ServerName: "localhost"})
		if _, err := tc.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(tc, make([]byte, 4)); err != nil {
			t.Fatal(err)
		}
		if _, err := raw.Write([]byte{23, 3, 3}); err != nil { // the start of a record header
			t.Fatal(err)
		}
	}
	o.waitGauge(t, "moat_connections_active", 10*time.Second, func(v float64) bool { return v == 3*each })
	held := o.waitGauge(t, "moat_tls_buffer_bytes", 5*time.Second, func(v float64) bool { return v == 0 })
	t.Logf("%d idle connections (silent, partial ClientHello, established): %v bytes of TLS buffers held", 3*each, held)
}

// dialFrom connects to addr from the loopback address local, so that a
// test can play several client hosts.
func dialFrom(local, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	return d.Dial("tcp", addr)
}

// TestSilentFloodDoesNotLockClientsOut: 4,200 connections from four hosts
// that send nothing hold more than the default --max-concurrent-handshakes
// (4096) and, each host, more than its share (--max-handshakes-per-source,
// a quarter of it). Clients from one of those hosts and from another still
// get through every time: a newcomer evicts the oldest connection that has
// not sent a ClientHello. Before, the silent ones held the cap for the
// whole handshake timeout and every client was refused.
func TestSilentFloodDoesNotLockClientsOut(t *testing.T) {
	raiseFileLimit(t, 6000)
	up := startUpstream(t, upperEcho)
	o := startOps(t, up.addr(), "--client-hello-timeout", "30s", "--handshake-timeout", "30s")
	var silent []net.Conn
	defer func() {
		for _, c := range silent {
			c.Close()
		}
	}()
	for i := 0; i < 4200; i++ {
		c, err := dialFrom(fmt.Sprintf("127.0.0.%d", 2+i%4), o.addr)
		if err != nil {
			t.Fatalf("silent connection %d: %v", i, err)
		}
		silent = append(silent, c)
	}
	o.waitGauge(t, "moat_connections_total", 10*time.Second, func(v float64) bool {
		return value(o.metrics(t), "moat_handshakes_evicted_total", map[string]string{"reason": "max-handshakes-per-source"}) > 0
	})
	for i := 0; i < 20; i++ {
		from := []string{"127.0.0.1", "127.0.0.2"}[i%2]
		raw, err := dialFrom(from, o.addr)
		if err != nil {
			t.Fatal(err)
		}
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		c := tls.Client(raw, &tls.Config{RootCAs: o.roots, ServerName: "localhost"})
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatalf("client %d from %s during the flood: %v", i, from, err)
		}
		if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
			t.Fatalf("client %d from %s during the flood: %v", i, from, err)
		}
		c.Close()
	}
	fams := o.metrics(t)
	t.Logf("evicted: %v for the cap, %v per source",
		value(fams, "moat_handshakes_evicted_total", map[string]string{"reason": "max-handshakes"}),
		value(fams, "moat_handshakes_evicted_total", map[string]string{"reason": "max-handshakes-per-source"}))
	if v := value(fams, "moat_handshakes_evicted_total", map[string]string{"reason": "max-handshakes-per-source"}); v <= 0 {
		t.Errorf("no eviction counted for --max-handshakes-per-source")
	}
}

// raiseFileLimit lifts the test process's open-file limit to at least n.
func raiseFileLimit(t testing.TB, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		t.Fatalf("the open-file hard limit is %d; this test needs %d", lim.Max, n)
	}
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
}

// stallAfter passes writes through until limit bytes were written, then
// blocks every write until the connection is closed: a client that sends
// most of its flight and stops.
type stallAfter struct {
	net.Conn
	left   int
	closed chan struct{}
}

func (s *stallAfter) Write(p []byte) (int, error) {
	if len(p) > s.left {
		n, err := s.Conn.Write(p[:s.left])
		s.left = 0
		if err != nil {
			return n, err
		}
		<-s.closed
		return n, net.ErrClosed
	}
	s.left -= len(p)
	return s.Conn.Write(p)
}

// stalledBigCertClients starts n TLS clients that present a client
// certificate chain of about 250 KiB and stall after sending 200 KiB of
// their handshake; they are released when the test ends.
func stalledBigCertClients(t *testing.T, n int, addr string) {
	_, leaf := testpki.LargeChain(4800)
	if b := leaf.ChainBytes(); b < 220<<10 || b > 250<<10 {
		t.Fatalf("the large chain is %d bytes, want about 240 KiB (under crypto/tls's 256 KiB message limit)", b)
	}
	cert := leaf.TLS()
	closed := make(chan struct{})
	t.Cleanup(func() { close(closed) })
	for i := 0; i < n; i++ {
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { raw.Close() })
		c := tls.Client(&stallAfter{Conn: raw, left: 200 << 10, closed: closed}, &tls.Config{
			InsecureSkipVerify: true, MaxVersion: tls.VersionTLS13,
			// Sent whatever CAs the server names: the size is the point.
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }})
		go c.Handshake()
	}
}

// startMTLSOps starts moat with client authentication (--allow-all over a
// fresh CA), a status port and a 60 s handshake timeout, in front of an
// echo upstream, with extra flags appended.
func startMTLSOps(t *testing.T, extra ...string) (*opsServer, *tcpUpstream) {
	t.Helper()
	p := newPKI(t, "mTLS ops CA")
	cert, key := p.serverCert(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	writePEM(t, caFile, "CERTIFICATE", p.cert.Raw)
	up := startUpstream(t, upperEcho)
	o := &opsServer{addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), status: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	args := append([]string{"server", "--listen", o.addr, "--target", up.addr(), "--cert", cert, "--key", key,
		"--cacert", caFile, "--allow-all", "--status", o.status, "--handshake-timeout", "60s"}, extra...)
	o.m = startMoat(t, args...)
	return o, up
}

// TestBigCertificateStallIsCut: clients that send most of a 250 KiB client
// certificate chain and stall are cut as soon as they pass
// --max-client-cert-bytes (default 64 KiB), not held for the handshake
// timeout with the chain in memory.
func TestBigCertificateStallIsCut(t *testing.T) {
	o, up := startMTLSOps(t)
	stalledBigCertClients(t, 20, o.addr)
	o.waitGauge(t, "moat_handshake_errors_total", 10*time.Second, func(float64) bool {
		return value(o.metrics(t), "moat_handshake_errors_total", map[string]string{"reason": "too-large"}) == 20
	})
	if up.accepted.Load() != 0 {
		t.Fatalf("the upstream was dialled %d times for refused handshakes", up.accepted.Load())
	}
}

// TestHandshakeMemoryBudgetCutsOldest: with the per-handshake bound off,
// stalled 200 KiB handshakes beyond --handshake-memory are cut, oldest
// first, so what unfinished handshakes hold stays within the budget.
func TestHandshakeMemoryBudgetCutsOldest(t *testing.T) {
	o, _ := startMTLSOps(t, "--max-client-cert-bytes", "0", "--handshake-memory", "4MiB")
	const n = 40
	stalledBigCertClients(t, n, o.addr)
	// Each is charged about 2 x 200 KiB: at most ten fit in 4 MiB.
	budget := map[string]string{"reason": "handshake-memory"}
	o.waitGauge(t, "moat_connections_total", 15*time.Second, func(float64) bool {
		return value(o.metrics(t), "moat_handshakes_evicted_total", budget) >= n-10
	})
	cut := value(o.metrics(t), "moat_handshakes_evicted_total", budget)
	t.Logf("%v of %d stalled handshakes cut for the 4 MiB budget", cut, n)
	if v := value(o.metrics(t), "moat_handshake_errors_total", map[string]string{"reason": "timeout"}); v != 0 {
		t.Fatalf("%v handshakes timed out; the budget should have cut them first", v)
	}
}
