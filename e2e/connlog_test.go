package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/moat-proxy/moat/internal/testpki"
)

// syncBuffer is a bytes.Buffer safe to write from a child's output copier
// while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// rootsOf is a pool holding f's CA.
func rootsOf(t testing.TB, f testpki.Files) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", f.CA)
	}
	return roots
}

// closedLine waits until moat has logged the JSON "connection closed" line
// for client and returns its fields. Every line of output must be a JSON
// object: that is moat's default log format.
func closedLine(t testing.TB, m *process, client string, d time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		for _, line := range strings.Split(strings.TrimSpace(m.output()), "\n") {
			var fields map[string]any
			if err := json.Unmarshal([]byte(line), &fields); err != nil {
				t.Fatalf("log line is not a JSON object: %q: %v", line, err)
			}
			if fields["message"] == "connection closed" && fields["client"] == client {
				return fields
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no \"connection closed\" line for client %s within %s", client, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConnectionClosedLogLine: after a Go TLS client sends N bytes and
// receives M through moat, moat's JSON "connection closed" line on stderr
// holds the client's address as the client sees it, a duration that covers
// the upstream's pause, the exact byte counts each way, the negotiated
// version and cipher, the SNI and reason "closed".
func TestConnectionClosedLogLine(t *testing.T) {
	const sent, answered = 123457, 654321
	const pause = 150 * time.Millisecond
	upstreamGot := make(chan int, 1)
	up := startUpstream(t, func(c net.Conn) {
		got, err := io.Copy(io.Discard, c) // to the client's close_notify
		if err != nil {
			upstreamGot <- -1
			return
		}
		upstreamGot <- int(got)
		time.Sleep(pause)
		c.Write(bytes.Repeat([]byte("m"), answered))
	})
	f := serverFiles(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	var stdout syncBuffer
	// No --log-format: the default must be JSON lines on stderr.
	m := startStdout(t, &stdout, moatBin, "server", "--listen", addr, "--target", up.addr(),
		"--cert", f.Cert, "--key", f.Key, "--disable-authentication")
	m.waitFor(t, "moat is listening", 10*time.Second)

	began := time.Now()
	c, err := tlsDialFiles(addr, f) // ServerName "localhost": the SNI
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	client := c.LocalAddr().String()
	if _, err := c.Write(bytes.Repeat([]byte("n"), sent)); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	if len(got) != answered {
		t.Fatalf("client received %d bytes, want %d", len(got), answered)
	}
	if n := <-upstreamGot; n != sent {
		t.Fatalf("upstream received %d bytes, want %d", n, sent)
	}
	cs := c.ConnectionState()

	fields := closedLine(t, m, client, 10*time.Second)
	elapsed := time.Since(began)
	if ms, ok := fields["duration_ms"].(float64); !ok || ms < float64(pause.Milliseconds()) || ms > float64(elapsed.Milliseconds())+1 {
		t.Errorf("duration_ms %v, want between %d (the upstream's pause) and %d (the test's own clock)", fields["duration_ms"], pause.Milliseconds(), elapsed.Milliseconds())
	}
	want := map[string]any{
		"client":            client,
		"bytes_from_client": float64(sent),
		"bytes_to_client":   float64(answered),
		"tls_version":       tls.VersionName(cs.Version),
		"cipher":            tls.CipherSuiteName(cs.CipherSuite),
		"sni":               "localhost",
		"reason":            "closed",
		"level":             "info",
	}
	for k, v := range want {
		if fields[k] != v {
			t.Errorf("%s = %v (%T), want %v", k, fields[k], fields[k], v)
		}
	}
	if _, ok := fields["error"]; ok {
		t.Errorf("a clean close logged an error: %v", fields["error"])
	}
	if out := stdout.String(); out != "" {
		t.Errorf("moat wrote to stdout, logs belong on stderr: %q", out)
	}
}

// TestClientResetReachesUpstreamAsReset: a client that resets its TCP
// connection (SO_LINGER 0, close) in the middle of a request makes moat
// reset the upstream connection too. The upstream's read fails with
// ECONNRESET instead of returning a clean EOF, so it cannot take the
// truncated request for a complete one.
func TestClientResetReachesUpstreamAsReset(t *testing.T) {
	const partial = 64 << 10
	var received atomic.Int64 // bytes the upstream has read so far
	ended := make(chan error, 1)
	up := startUpstream(t, func(c net.Conn) {
		c.SetReadDeadline(time.Now().Add(15 * time.Second))
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Read(buf)
			total := received.Add(int64(n))
			if err != nil {
				ended <- fmt.Errorf("after %d bytes: %w", total, err)
				return
			}
		}
	})
	f := serverFiles(t)
	m, addr := moatServer(t, f, up.addr())
	raw, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, &tls.Config{RootCAs: rootsOf(t, f), ServerName: "localhost"})
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	// The request promises a megabyte and delivers 64 KiB of it.
	req := fmt.Sprintf("PUT /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n", 1<<20)
	if _, err := c.Write(append([]byte(req), bytes.Repeat([]byte("x"), partial)...)); err != nil {
		t.Fatal(err)
	}
	want := int64(len(req) + partial)
	for deadline := time.Now().Add(10 * time.Second); received.Load() < want; time.Sleep(5 * time.Millisecond) {
		select {
		case err := <-ended:
			t.Fatalf("upstream connection ended before the reset: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("upstream received %d of the %d bytes sent before the reset", received.Load(), want)
		}
	}
	client := raw.LocalAddr().String()
	if err := raw.(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	raw.Close() // RST, no close_notify

	select {
	case err := <-ended:
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("upstream read ended with %v, want a connection reset", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("upstream never learnt that the client went away")
	}
	fields := closedLine(t, m, client, 10*time.Second)
	if e, _ := fields["error"].(string); fields["reason"] == "closed" || !strings.Contains(e, "reset") {
		t.Errorf("a reset client was not logged as a reset: reason %v, error %v", fields["reason"], fields["error"])
	}
	if fields["bytes_from_client"] != float64(want) {
		t.Errorf("bytes_from_client %v, want %d", fields["bytes_from_client"], want)
	}
}

// listenFull is a TCP listener on 127.0.0.1 that never accepts, with its
// accept queue filled, so that Linux drops further SYNs and a connect to
// it hangs instead of completing or being refused. It returns the address
// after checking that a connect really does hang.
func listenFull(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil { // room for one queued connection
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	// Fill the queue: connects complete until it is full (they are kept
	// open until the test ends); the first that hangs shows the condition.
	for i := 0; i < 4; i++ {
		began := time.Now()
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err == nil {
			t.Cleanup(func() { c.Close() })
			continue
		}
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() || time.Since(began) < 250*time.Millisecond {
			t.Fatalf("a connect to the full listener failed with %v instead of hanging", err)
		}
		return addr
	}
	t.Fatalf("4 connects to a listener with backlog 0 completed: the test cannot make a connect hang here")
	return ""
}

// TestServerConnectTimeout: with --connect-timeout 500ms and an upstream
// whose TCP handshake never completes, a client that finished its TLS
// handshake has its connection reset after about 500 ms (not the 10 s
// default, not at once), and moat logs reason "dial" with the timeout.
func TestServerConnectTimeout(t *testing.T) {
	target := listenFull(t)
	f := serverFiles(t)
	m, addr := moatServer(t, f, target, "--connect-timeout", "500ms")
	c, err := tlsDialFiles(addr, f)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	handshook := time.Now()
	client := c.LocalAddr().String()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 1))
	took := time.Since(handshook)
	if n != 0 || err == nil {
		t.Fatalf("read %d bytes, err %v: want the connection to end", n, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the connection was still open after 10 s: --connect-timeout 500ms not enforced")
	}
	if !errors.Is(err, syscall.ECONNRESET) && err != io.EOF {
		t.Fatalf("connection ended with %v, want a reset or a close", err)
	}
	if took < 400*time.Millisecond || took > 3*time.Second {
		t.Fatalf("connection ended %s after the handshake, want about 500ms", took)
	}
	fields := closedLine(t, m, client, 5*time.Second)
	if fields["reason"] != "dial" {
		t.Errorf("reason %v, want dial", fields["reason"])
	}
	if e, _ := fields["error"].(string); !strings.Contains(e, "500ms") || !strings.Contains(e, target) {
		t.Errorf("error %q does not name the target %s and the 500ms timeout", e, target)
	}
	if ms, _ := fields["duration_ms"].(float64); ms < 400 {
		t.Errorf("duration_ms %v, want at least the 500ms connect timeout less scheduling slack", fields["duration_ms"])
	}
}
