package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moat-proxy/moat/internal/testpki"
)

// These tests run `moat client` against a crypto/tls server in the test
// process, which reports what it saw: handshake errors, raw bytes, SNI,
// resumption, the client certificate.

// goServer is a TLS server on 127.0.0.1 that hands each connection, after
// its handshake, to the test.
type goServer struct {
	addr  string
	ln    net.Listener
	conns chan *serverConn
}

// serverConn is one accepted connection with what the server saw of it.
type serverConn struct {
	*tls.Conn
	r            *bufio.Reader
	handshakeErr error
	state        tls.ConnectionState
	raw          *rawRecorder
}

// rawRecorder keeps every byte the server read off the wire.
type rawRecorder struct {
	net.Conn
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *rawRecorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	r.buf.Write(p[:n])
	r.mu.Unlock()
	return n, err
}

func (r *rawRecorder) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.buf.Bytes())
}

func startGoServer(t testing.TB, cfg *tls.Config) *goServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &goServer{addr: ln.Addr().String(), ln: ln, conns: make(chan *serverConn, 16)}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			raw := &rawRecorder{Conn: c}
			tc := tls.Server(raw, cfg)
			sc := &serverConn{Conn: tc, r: bufio.NewReader(tc), raw: raw}
			tc.SetDeadline(time.Now().Add(step))
			sc.handshakeErr = tc.Handshake()
			tc.SetDeadline(time.Time{})
			sc.state = tc.ConnectionState()
			s.conns <- sc
		}
	}()
	return s
}

// next waits for the server's next connection.
func (s *goServer) next(t testing.TB) *serverConn {
	t.Helper()
	select {
	case sc := <-s.conns:
		return sc
	case <-time.After(step):
		t.Fatal("no connection reached the TLS server")
		return nil
	}
}

func (sc *serverConn) expectLine(t testing.TB, want string) {
	t.Helper()
	sc.SetReadDeadline(time.Now().Add(step))
	got, err := sc.r.ReadString('\n')
	if err != nil || strings.TrimRight(got, "\n") != want {
		t.Fatalf("server read %q (err %v), want %q", got, err, want)
	}
}

func (sc *serverConn) writeLine(t testing.TB, s string) {
	t.Helper()
	if _, err := io.WriteString(sc, s+"\n"); err != nil {
		t.Fatalf("server write: %v", err)
	}
}

func serverConfig(leaf *testpki.Leaf) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{leaf.TLS()}, MinVersion: tls.VersionTLS12}
}

func writeCA(t testing.TB, ca *testpki.CA) string {
	t.Helper()
	f, err := ca.IssueClient("unused").WritePEM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return f.CA
}

// TestClientRefusesUnverifiedServer: a server certificate with the wrong
// name or from another CA fails the handshake, and the app's bytes never
// reach the server, neither as plaintext nor inside TLS records.
func TestClientRefusesUnverifiedServer(t *testing.T) {
	ca, other := testpki.NewCA(), testpki.NewCA()
	caFile := writeCA(t, ca)
	for _, tc := range []struct {
		name string
		leaf *testpki.Leaf
		args []string
		log  string
	}{
		{"wrong name for the IP target", ca.Issue("db.internal"), []string{"--cacert", caFile}, "doesn't contain any IP SANs"},
		{"wrong --server-name", ca.Issue("db.internal", "127.0.0.1"), []string{"--cacert", caFile, "--server-name", "cache.internal"}, "not cache.internal"},
		{"another CA", other.Issue("127.0.0.1"), []string{"--cacert", caFile}, "unknown authority"},
		{"system roots without --cacert", ca.Issue("127.0.0.1"), nil, "unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startGoServer(t, serverConfig(tc.leaf))
			moat, listen := startClient(t, srv.addr, tc.args...)
			a := dialApp(t, "tcp", listen)
			a.writeLine(t, "secret-app-bytes")
			a.expectClosed(t)
			sc := srv.next(t)
			if sc.handshakeErr == nil {
				t.Fatal("the server completed a handshake with moat")
			}
			moat.waitFor(t, `"reason":"handshake"`, step)
			moat.waitFor(t, tc.log, step)
			if bytes.Contains(sc.raw.bytes(), []byte("secret-app-bytes")) {
				t.Fatal("the app's plaintext reached the server")
			}
			for _, rec := range records(sc.raw.bytes()) {
				if rec == 23 {
					t.Fatal("moat sent application data to an unverified server")
				}
			}
		})
	}
}

// records returns the content types of the TLS records in b.
func records(b []byte) []byte {
	var types []byte
	for len(b) >= 5 {
		types = append(types, b[0])
		n := 5 + int(b[3])<<8 | int(b[4])
		if n > len(b) {
			break
		}
		b = b[n:]
	}
	return types
}

// TestClientVerifiesIPAndServerName: an IP target is checked against the
// certificate's IP SANs and sends no SNI; --server-name both verifies and
// is sent as SNI.
func TestClientVerifiesIPAndServerName(t *testing.T) {
	ca := testpki.NewCA()
	caFile := writeCA(t, ca)
	for _, tc := range []struct {
		name    string
		leaf    *testpki.Leaf
		args    []string
		wantSNI string
	}{
		{"IP SAN", ca.Issue("127.0.0.1"), nil, ""},
		{"server name", ca.Issue("db.internal"), []string{"--server-name", "db.internal"}, "db.internal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startGoServer(t, serverConfig(tc.leaf))
			_, listen := startClient(t, srv.addr, append([]string{"--cacert", caFile}, tc.args...)...)
			a := dialApp(t, "tcp", listen)
			sc := srv.next(t)
			if sc.handshakeErr != nil {
				t.Fatal(sc.handshakeErr)
			}
			if sc.state.ServerName != tc.wantSNI {
				t.Fatalf("SNI %q, want %q", sc.state.ServerName, tc.wantSNI)
			}
			if sc.state.Version < tls.VersionTLS12 {
				t.Fatalf("negotiated %s", tls.VersionName(sc.state.Version))
			}
			a.writeLine(t, "ping")
			sc.expectLine(t, "ping")
			sc.writeLine(t, "pong")
			a.expectLine(t, "pong")
		})
	}
}

// TestClientHalfClose mirrors server mode: the app's FIN becomes
// close_notify and the server can still answer; the server's close_notify
// becomes a FIN to the app, which can still send.
func TestClientHalfClose(t *testing.T) {
	pki := newClientPKI(t)
	leaf := pki.ca.Issue("127.0.0.1")
	srv := startGoServer(t, serverConfig(leaf))
	moat, listen := startClient(t, srv.addr, "--cacert", pki.server.CA)

	t.Run("app closes first", func(t *testing.T) {
		a := dialApp(t, "tcp", listen)
		sc := srv.next(t)
		a.writeLine(t, "request")
		a.Conn.(*net.TCPConn).CloseWrite()
		sc.SetReadDeadline(time.Now().Add(step))
		got, err := io.ReadAll(sc.r)
		if err != nil || string(got) != "request\n" {
			t.Fatalf("server read %q, %v; want the request then EOF", got, err)
		}
		sc.writeLine(t, "response")
		sc.Close()
		a.expectLine(t, "response")
		a.expectClosed(t)
	})
	t.Run("server closes first", func(t *testing.T) {
		a := dialApp(t, "tcp", listen)
		sc := srv.next(t)
		sc.writeLine(t, "greeting")
		if err := sc.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		a.expectLine(t, "greeting")
		a.expectClosed(t)
		a.writeLine(t, "late-reply")
		a.Close()
		sc.SetReadDeadline(time.Now().Add(step))
		got, err := io.ReadAll(sc.r)
		if err != nil || string(got) != "late-reply\n" {
			t.Fatalf("server read %q, %v; want the late reply then EOF", got, err)
		}
	})
	moat.waitFor(t, `"reason":"closed"`, step)
	if n := moat.count(`"reason":"closed"`); n > 2 {
		t.Fatalf("%d clean closes logged, want at most 2", n)
	}
}

// TestClientResumesSessions: the second connection to the same target
// resumes the first one's session, with TLS 1.2 and TLS 1.3, as the server
// sees it; --session-cache-size 0 turns resumption off.
func TestClientResumesSessions(t *testing.T) {
	pki := newClientPKI(t)
	for _, tc := range []struct {
		name       string
		version    uint16
		args       []string
		wantResume bool
	}{
		{"TLS 1.2", tls.VersionTLS12, nil, true},
		{"TLS 1.3", tls.VersionTLS13, nil, true},
		{"TLS 1.3 without a cache", tls.VersionTLS13, []string{"--session-cache-size", "0"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := serverConfig(pki.ca.Issue("127.0.0.1"))
			cfg.MaxVersion = tc.version
			srv := startGoServer(t, cfg)
			_, listen := startClient(t, srv.addr, append([]string{"--cacert", pki.server.CA}, tc.args...)...)
			for i, want := range []bool{false, tc.wantResume} {
				a := dialApp(t, "tcp", listen)
				sc := srv.next(t)
				if sc.handshakeErr != nil {
					t.Fatal(sc.handshakeErr)
				}
				if sc.state.Version != tc.version || sc.state.DidResume != want {
					t.Fatalf("connection %d: %s, resumed %v; want %s, resumed %v", i+1,
						tls.VersionName(sc.state.Version), sc.state.DidResume, tls.VersionName(tc.version), want)
				}
				// A round trip makes sure moat has read the session ticket
				// (TLS 1.3 sends it after the handshake).
				a.writeLine(t, "ping")
				sc.expectLine(t, "ping")
				sc.writeLine(t, "pong")
				a.expectLine(t, "pong")
				a.Close()
			}
		})
	}
}

// TestClientUnixListen: --listen unix:/path with --listen-mode accepts
// plaintext on a unix socket with those permissions.
func TestClientUnixListen(t *testing.T) {
	pki := newClientPKI(t)
	srv := startGoServer(t, serverConfig(pki.ca.Issue("127.0.0.1")))
	sock := filepath.Join(t.TempDir(), "app.sock")
	startMoat(t, "client", "--listen", "unix:"+sock, "--listen-mode", "0660", "--target", srv.addr, "--cacert", pki.server.CA)
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v, want a socket with 0660", fi.Mode())
	}
	a := dialApp(t, "unix", sock)
	sc := srv.next(t)
	a.writeLine(t, "over-unix")
	sc.expectLine(t, "over-unix")
	sc.writeLine(t, "back-over-unix")
	a.expectLine(t, "back-over-unix")
}

// TestClientCertificateReload: the client certificate comes from
// --cert/--key and is reloaded when the files change; the next connection
// presents the new one. Resumption is off: a resumed session keeps the
// identity it was made with.
func TestClientCertificateReload(t *testing.T) {
	pki := newClientPKI(t)
	cfg := serverConfig(pki.ca.Issue("127.0.0.1"))
	cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, pki.ca.Pool()
	srv := startGoServer(t, cfg)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	install := func(name string) {
		f, err := pki.ca.IssueClient(name).WritePEM(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		for from, to := range map[string]string{f.Key: keyFile, f.Cert: certFile} {
			b, err := os.ReadFile(from)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(to+".new", b, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(to+".new", to); err != nil {
				t.Fatal(err)
			}
		}
	}
	install("alice")
	moat, listen := startClient(t, srv.addr, "--cacert", pki.server.CA, "--cert", certFile, "--key", keyFile, "--session-cache-size", "0")
	for _, want := range []string{"alice", "bob"} {
		if want == "bob" {
			install("bob")
			moat.waitFor(t, "certificate reloaded", step)
		}
		a := dialApp(t, "tcp", listen)
		sc := srv.next(t)
		if sc.handshakeErr != nil {
			t.Fatal(sc.handshakeErr)
		}
		if got := sc.state.PeerCertificates[0].Subject.CommonName; got != want {
			t.Fatalf("client certificate CN %q, want %q", got, want)
		}
		a.Close()
	}
}

// TestClientModeStatusAndMetrics: client mode serves the same status port:
// /readyz follows the remote, and /metrics counts handshakes with the
// resumed session, and the bytes each way as seen from the app.
func TestClientModeStatusAndMetrics(t *testing.T) {
	pki := newClientPKI(t)
	cfg := serverConfig(pki.ca.Issue("127.0.0.1"))
	cfg.MaxVersion = tls.VersionTLS13
	srv := startGoServer(t, cfg)
	ops := &opsServer{status: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	_, listen := startClient(t, srv.addr, "--cacert", pki.server.CA, "--status", ops.status)
	for i := 0; i < 2; i++ {
		a := dialApp(t, "tcp", listen)
		sc := srv.next(t)
		a.writeLine(t, "ping")
		sc.expectLine(t, "ping")
		sc.writeLine(t, "pong!")
		a.expectLine(t, "pong!")
		a.Close()
	}
	cases := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"moat_sessions_resumed_total", nil, 1},
		{"moat_handshakes_total", map[string]string{"result": "ok", "version": "1.3", "group": "X25519MLKEM768"}, 2},
		{"moat_connections_total", nil, 2},
		{"moat_bytes_total", map[string]string{"direction": "from_client"}, 2 * 5}, // "ping\n"
		{"moat_bytes_total", map[string]string{"direction": "to_client"}, 2 * 6},   // "pong!\n"
	}
	// The app can read the last reply before the loop that wrote it has
	// counted it: poll until the counts settle.
	var mismatches []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		fams := ops.metrics(t)
		mismatches = mismatches[:0]
		for _, tc := range cases {
			if got := value(fams, tc.name, tc.labels); got != tc.want {
				mismatches = append(mismatches, fmt.Sprintf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want))
			}
		}
		if len(mismatches) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, m := range mismatches {
		t.Error(m)
	}
	// Last: the readiness probe's connect reaches the remote as a connection.
	if code, body := ops.get("/readyz"); code != 200 {
		t.Fatalf("/readyz with the remote up = %d %q", code, body)
	}
	srv.ln.Close()
	// Readiness caches its upstream check for a second: poll past that.
	var code int
	var body string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if code, body = ops.get("/readyz"); code == 503 {
			break
		}
	}
	if code != 503 || !strings.Contains(body, "unreachable") {
		t.Fatalf("/readyz with the remote down = %d %q, want 503 naming it unreachable", code, body)
	}
}

// TestClientModeTimeouts: --handshake-timeout ends a connection whose remote
// accepts TCP but never answers the ClientHello, and --idle-timeout ends an
// established connection that moved nothing; each says why in its log line.
func TestClientModeTimeouts(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close() // holds the connection open, says nothing
		}
	}()
	pki := newClientPKI(t)
	m, listen := startClient(t, silent.Addr().String(), "--cacert", pki.server.CA, "--server-name", "127.0.0.1",
		"--handshake-timeout", "300ms")
	a := dialApp(t, "tcp", listen)
	start := time.Now()
	a.expectClosed(t)
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Fatalf("ended after %s, before the 300ms handshake timeout", waited)
	}
	m.waitFor(t, `"reason":"handshake timeout"`, step)

	srv := startGoServer(t, serverConfig(pki.ca.Issue("127.0.0.1")))
	m, listen = startClient(t, srv.addr, "--cacert", pki.server.CA, "--idle-timeout", "300ms")
	a = dialApp(t, "tcp", listen)
	sc := srv.next(t)
	a.writeLine(t, "one line, then silence")
	sc.expectLine(t, "one line, then silence")
	start = time.Now()
	a.expectClosed(t)
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Fatalf("ended after %s, before the 300ms idle timeout", waited)
	}
	m.waitFor(t, `"reason":"idle timeout"`, step)
}
