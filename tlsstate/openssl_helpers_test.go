package tlsstate

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// opensslTimeout bounds every wait on a real peer. Waits end as soon as the
// awaited output appears; the bound only turns a hang into a failure.
const opensslTimeout = 20 * time.Second

// requireOpenSSL returns the openssl binary. Without one the test is skipped
// on a developer machine, but fails in CI, where a skip would hide a gap.
func requireOpenSSL(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("openssl is required in CI: %v", err)
		}
		t.Skipf("openssl not installed: %v", err)
	}
	return path
}

// opensslProc is a running openssl s_client or s_server. Its stdout and
// stderr are collected together; tests sequence on them with waitFor.
type opensslProc struct {
	t     *testing.T
	stdin io.WriteCloser
	mu    sync.Mutex
	out   strings.Builder
	mark  int // waitFor searches output after this offset
}

func startOpenSSL(t *testing.T, args ...string) *opensslProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*opensslTimeout)
	cmd := exec.CommandContext(ctx, requireOpenSSL(t), args...)
	p := &opensslProc{t: t}
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = p, p
	if err := cmd.Start(); err != nil {
		t.Fatalf("start openssl %v: %v", args, err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("openssl %v output:\n%s", args, p.output())
		}
	})
	return p
}

// Write collects the process's output (io.Writer for exec.Cmd).
func (p *opensslProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *opensslProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// send writes a line to openssl's stdin (a command such as "K", or data).
func (p *opensslProc) send(line string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		p.t.Fatalf("openssl stdin: %v", err)
	}
}

// seen reports whether want appears after the mark, and moves the mark past it.
func (p *opensslProc) seen(want *regexp.Regexp) (string, bool) {
	out := p.output()
	loc := want.FindStringIndex(out[p.mark:])
	if loc == nil {
		return "", false
	}
	match := out[p.mark+loc[0] : p.mark+loc[1]]
	p.mark += loc[1]
	return match, true
}

// peer is an engine on a real socket owned by the test. The engine never
// touches the socket; poll moves bytes between the two.
type peer struct {
	t       *testing.T
	conn    net.Conn
	e       *Engine
	plain   []byte // plaintext read so far
	readOut int    // ciphertext produced by Read calls, flushed
	raw     int    // ciphertext received from the socket
	err     error  // first fatal engine error
	hold    bool   // do not flush Output (to show what an unflushed read path does)
	buf     []byte
}

func newPeer(t *testing.T, conn net.Conn, e *Engine) *peer {
	t.Cleanup(func() { conn.Close(); e.Close() })
	return &peer{t: t, conn: conn, e: e, buf: make([]byte, 32<<10)}
}

// poll reads what arrives within d, lets the engine read it (which drives
// handshakes and answers post-handshake messages), and flushes Output.
func (p *peer) poll(d time.Duration) {
	p.t.Helper()
	if p.err == nil && p.e.State() != Closed {
		p.conn.SetReadDeadline(time.Now().Add(d))
		n, err := p.conn.Read(p.e.InputSpace())
		p.e.Commit(max(n, 0))
		p.raw += max(n, 0)
		var ne net.Error
		switch {
		case errors.Is(err, io.EOF):
			p.e.FeedEOF()
		case err != nil && !(errors.As(err, &ne) && ne.Timeout()):
			p.t.Fatalf("socket read: %v", err)
		}
		p.readAll()
	} else {
		time.Sleep(d)
	}
	p.flush()
}

func (p *peer) readAll() {
	for p.err == nil {
		n, err := p.e.Read(p.buf)
		p.plain = append(p.plain, p.buf[:n]...)
		p.readOut += p.e.Pending()
		if err == ErrWantRead || (err == nil && n == 0) {
			return
		}
		if err != nil {
			p.err = err
			return
		}
		p.flush()
	}
}

func (p *peer) flush() {
	p.t.Helper()
	for !p.hold && p.e.Pending() > 0 {
		n, err := p.conn.Write(p.e.Output())
		p.e.Consume(n)
		if err != nil {
			p.t.Fatalf("socket write: %v", err)
		}
	}
}

// write sends plaintext through the engine and flushes it.
func (p *peer) write(s string) {
	p.t.Helper()
	for rest := []byte(s); len(rest) > 0; {
		n, err := p.e.Write(rest)
		if err != nil {
			p.t.Fatalf("engine Write: %v", err)
		}
		rest = rest[n:]
		p.flush()
	}
}

// until polls the engine until cond holds, failing after opensslTimeout.
func (p *peer) until(what string, cond func() bool) {
	p.t.Helper()
	for deadline := time.Now().Add(opensslTimeout); !cond(); p.poll(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out waiting for %s (state=%v err=%v)", what, p.e.State(), p.err)
		}
	}
}

// waitFor polls the engine until openssl prints something matching re.
func (p *peer) waitFor(o *opensslProc, re string) string {
	p.t.Helper()
	want := regexp.MustCompile(re)
	var match string
	p.until("openssl output /"+re+"/", func() bool {
		m, ok := o.seen(want)
		match = m
		return ok
	})
	return match
}

// handshake polls until the engine is Open.
func (p *peer) handshake() {
	p.t.Helper()
	p.until("handshake", func() bool { return p.e.State() == Open || p.err != nil })
	if p.err != nil {
		p.t.Fatalf("handshake: %v", p.err)
	}
	p.readOut = 0
}

// acceptClient listens on a fresh loopback port, starts s_client against it
// with args, and returns the process and the accepted socket.
func acceptClient(t *testing.T, args ...string) (*opensslProc, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	proc := startOpenSSL(t, append([]string{"s_client", "-connect", ln.Addr().String()}, args...)...)
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(opensslTimeout))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept s_client: %v\n%s", err, proc.output())
	}
	return proc, conn
}

var acceptLine = regexp.MustCompile(`ACCEPT [^\s]*:(\d+)`)

// dialServer starts s_server on a port it picks itself (-accept 0 avoids a
// race for a free port) and dials it.
func dialServer(t *testing.T, args ...string) (*opensslProc, net.Conn) {
	t.Helper()
	proc := startOpenSSL(t, append([]string{"s_server", "-4", "-accept", "127.0.0.1:0", "-naccept", "1"}, args...)...)
	var port string
	for deadline := time.Now().Add(opensslTimeout); ; time.Sleep(5 * time.Millisecond) {
		if m := acceptLine.FindStringSubmatch(proc.output()); m != nil {
			port = m[1]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("s_server did not report its port:\n%s", proc.output())
		}
	}
	conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), opensslTimeout)
	if err != nil {
		t.Fatalf("dial s_server: %v", err)
	}
	return proc, conn
}
