package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/moat-proxy/moat/internal/testpki"
)

// These tests run `moat client` against openssl s_server driven through its
// stdin: 'r' asks for a TLS 1.2 renegotiation, 'R' asks for one that also
// requests a client certificate, 'K' sends a TLS 1.3
// KeyUpdate(update_requested). The local app is a plain TCP connection to
// moat's --listen.

// step bounds every wait on a peer; tests never sleep to sequence.
const step = 10 * time.Second

// clientPKI is a CA with a server certificate for 127.0.0.1 and localhost
// and a client certificate, written as PEM files.
type clientPKI struct {
	ca             *testpki.CA
	server, client testpki.Files
}

func newClientPKI(t testing.TB) *clientPKI {
	t.Helper()
	ca := testpki.NewCA()
	p := &clientPKI{ca: ca}
	var err error
	if p.server, err = ca.Issue("127.0.0.1", "localhost").WritePEM(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if p.client, err = ca.IssueClient("moat-client").WritePEM(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	return p
}

// startClient runs `moat client` towards target and returns it with the
// address of its --listen.
func startClient(t testing.TB, target string, args ...string) (*process, string) {
	t.Helper()
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := startMoat(t, append([]string{"client", "--listen", listen, "--target", target}, args...)...)
	return p, listen
}

var acceptPort = regexp.MustCompile(`ACCEPT [^\s]*:(\d+)`)

// startSServer runs openssl s_server on a port it picks itself and returns
// it with its address. It serves one connection after another.
func startSServer(t testing.TB, args ...string) (*process, string) {
	t.Helper()
	bin := needTool(t, "openssl")
	p := start(t, bin, append([]string{"s_server", "-4", "-accept", "127.0.0.1:0"}, args...)...)
	m := waitMatch(t, p, acceptPort, 1, step)
	return p, "127.0.0.1:" + m[1]
}

// waitMatch waits until re matches the output at least n times and returns
// the submatches of the first match.
func waitMatch(t testing.TB, p *process, re *regexp.Regexp, n int, d time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		out := p.output()
		if all := re.FindAllStringSubmatch(out, -1); len(all) >= n {
			return all[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q matched %d times within %s, want %d", re, len(re.FindAllString(out, -1)), d, n)
		}
		select {
		case <-p.lines:
		case <-p.done:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// send writes one line to a process's stdin (s_server: data, or a command
// letter on a line of its own).
func (p *process) send(t testing.TB, line string) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		t.Fatalf("write to stdin: %v", err)
	}
}

// app is the local plaintext application talking to moat's --listen.
type app struct {
	net.Conn
	r *bufio.Reader
}

func dialApp(t testing.TB, network, addr string) *app {
	t.Helper()
	c := dialRetry(t, network, addr)
	t.Cleanup(func() { c.Close() })
	return &app{Conn: c, r: bufio.NewReader(c)}
}

func (a *app) writeLine(t testing.TB, s string) {
	t.Helper()
	if _, err := io.WriteString(a, s+"\n"); err != nil {
		t.Fatalf("app write %q: %v", s, err)
	}
}

// expectLine reads one line and checks it.
func (a *app) expectLine(t testing.TB, want string) {
	t.Helper()
	a.SetReadDeadline(time.Now().Add(step))
	got, err := a.r.ReadString('\n')
	if err != nil || strings.TrimRight(got, "\r\n") != want {
		t.Fatalf("app read %q (err %v), want %q", got, err, want)
	}
}

// expectClosed checks that moat ended the connection: EOF or a reset, with
// no more data.
func (a *app) expectClosed(t testing.TB) {
	t.Helper()
	a.SetReadDeadline(time.Now().Add(step))
	b, err := io.ReadAll(a.r)
	if len(b) > 0 {
		t.Fatalf("app read %q after the connection should have ended", b)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("moat did not end the connection")
	}
}

// exchange proves data flows both ways: app → s_server and back.
func exchange(t testing.TB, srv *process, a *app, tag string) {
	t.Helper()
	a.writeLine(t, "from-app-"+tag)
	srv.waitFor(t, "from-app-"+tag, step)
	srv.send(t, "from-server-"+tag)
	a.expectLine(t, "from-server-"+tag)
}

var (
	// Messages s_server -msg prints for what it receives (<<<).
	clientFinished12  = regexp.MustCompile(`<<< TLS 1\.2, Handshake \[length [0-9a-f]+\], Finished`)
	clientCertificate = regexp.MustCompile(`(?s)>>> TLS 1\.2, Handshake \[length [0-9a-f]+\], CertificateRequest.*<<< TLS 1\.2, Handshake \[length [0-9a-f]+\], Certificate\b.*<<< TLS 1\.2, Handshake \[length [0-9a-f]+\], CertificateVerify`)
	noRenegotiation   = regexp.MustCompile(`<<< TLS 1\.2, Alert \[length 0002\], warning no_renegotiation`)
	clientKeyUpdate   = regexp.MustCompile(`<<< TLS 1\.3, Handshake \[length 0005\], KeyUpdate`)
)

// TestClientRenegotiationAllowed: under --renegotiation once and freely,
// s_server's HelloRequest mid-stream is answered with a full handshake and
// data keeps flowing both ways after each one.
func TestClientRenegotiationAllowed(t *testing.T) {
	for _, tc := range []struct {
		policy string
		cmds   int
	}{{"once", 1}, {"freely", 2}} {
		t.Run(tc.policy, func(t *testing.T) {
			pki := newClientPKI(t)
			srv, target := startSServer(t, "-tls1_2", "-msg", "-cert", pki.server.Cert, "-key", pki.server.Key)
			moat, listen := startClient(t, target, "--cacert", pki.server.CA, "--renegotiation", tc.policy)
			a := dialApp(t, "tcp", listen)
			exchange(t, srv, a, "before")
			for i := 1; i <= tc.cmds; i++ {
				srv.send(t, "r")
				waitMatch(t, srv, clientFinished12, 1+i, step)
				exchange(t, srv, a, fmt.Sprintf("after-%d", i))
			}
			a.Close()
			moat.waitFor(t, `"reason":"closed"`, step)
		})
	}
}

// TestClientRenegotiationWithClientCertificate: 'R' makes s_server ask for
// a client certificate only in the renegotiation; moat answers with the
// one from --cert/--key, which s_server verifies, and data flows after.
func TestClientRenegotiationWithClientCertificate(t *testing.T) {
	pki := newClientPKI(t)
	srv, target := startSServer(t, "-tls1_2", "-msg", "-cert", pki.server.Cert, "-key", pki.server.Key, "-CAfile", pki.client.CA)
	_, listen := startClient(t, target, "--cacert", pki.server.CA, "--renegotiation", "once",
		"--cert", pki.client.Cert, "--key", pki.client.Key)
	a := dialApp(t, "tcp", listen)
	exchange(t, srv, a, "before")
	if strings.Contains(srv.output(), "CertificateRequest") {
		t.Fatal("s_server asked for a client certificate in the first handshake")
	}
	srv.send(t, "R")
	waitMatch(t, srv, clientCertificate, 1, step)
	waitMatch(t, srv, clientFinished12, 2, step)
	exchange(t, srv, a, "after")
}

// TestClientRenegotiationRefused: a renegotiation the policy refuses (any
// under never, the second under once) ends that connection with a log line
// naming the flag, and a connection waiting behind it is unaffected.
func TestClientRenegotiationRefused(t *testing.T) {
	for _, tc := range []struct {
		policy  string
		allowed int
		log     string
	}{
		{"never", 0, "server requested TLS renegotiation, refused by --renegotiation=never; use --renegotiation=once or freely to allow it"},
		{"once", 1, "server requested a second TLS renegotiation, refused by --renegotiation=once; use --renegotiation=freely to allow it"},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			pki := newClientPKI(t)
			srv, target := startSServer(t, "-tls1_2", "-msg", "-cert", pki.server.Cert, "-key", pki.server.Key)
			moat, listen := startClient(t, target, "--cacert", pki.server.CA, "--renegotiation", tc.policy)
			first := dialApp(t, "tcp", listen)
			exchange(t, srv, first, "first")
			for i := 1; i <= tc.allowed; i++ {
				srv.send(t, "r")
				waitMatch(t, srv, clientFinished12, 1+i, step)
				exchange(t, srv, first, fmt.Sprintf("first-after-%d", i))
			}
			// s_server serves one connection at a time: the second one is
			// connected and waits in its accept queue meanwhile.
			second := dialApp(t, "tcp", listen)
			second.writeLine(t, "from-app-second")

			srv.send(t, "r")
			waitMatch(t, srv, noRenegotiation, 1, step)
			first.expectClosed(t)
			moat.waitFor(t, tc.log, step)
			if n := moat.count(tc.log); n != 1 {
				t.Fatalf("log line appears %d times, want 1", n)
			}
			if n := moat.count(`"reason":"renegotiation refused"`); n != 1 {
				t.Fatalf("close reason renegotiation refused appears %d times, want 1", n)
			}

			srv.waitFor(t, "from-app-second", step)
			srv.send(t, "from-server-second")
			second.expectLine(t, "from-server-second")
			exchange(t, srv, second, "second-again")
		})
	}
}

// TestClientAnswersTLS13KeyUpdate: s_server's KeyUpdate(update_requested)
// is answered with moat's own KeyUpdate, and data flows both ways after.
func TestClientAnswersTLS13KeyUpdate(t *testing.T) {
	pki := newClientPKI(t)
	srv, target := startSServer(t, "-tls1_3", "-msg", "-cert", pki.server.Cert, "-key", pki.server.Key)
	_, listen := startClient(t, target, "--cacert", pki.server.CA)
	a := dialApp(t, "tcp", listen)
	exchange(t, srv, a, "before")
	srv.send(t, "K")
	waitMatch(t, srv, clientKeyUpdate, 1, step)
	exchange(t, srv, a, "after")
	srv.send(t, "K")
	waitMatch(t, srv, clientKeyUpdate, 2, step)
	exchange(t, srv, a, "after-second")
}
