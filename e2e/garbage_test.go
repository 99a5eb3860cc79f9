package e2e

import (
	"bufio"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestGarbageNeverDialsUpstream (the moat binary; proxy/ has an in-process
// variant): with one good TLS connection open through moat, connections
// that send random bytes, a plaintext HTTP request or a broken TLS record
// are each closed by moat on its own, with nothing or a TLS alert, and
// never reach the upstream: its accepted count afterwards is exactly the
// good connections. The connection that was open all along still echoes.
func TestGarbageNeverDialsUpstream(t *testing.T) {
	up := startUpstream(t, upperEcho)
	f := serverFiles(t)
	m, addr := moatServer(t, f, up.addr())
	echo := func(c net.Conn, r *bufio.Reader, line string) {
		t.Helper()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, line+"\n"); err != nil {
			t.Fatalf("write %q: %v", line, err)
		}
		got, err := r.ReadString('\n')
		if err != nil || got != strings.ToUpper(line)+"\n" {
			t.Fatalf("echo of %q: %q, %v", line, got, err)
		}
	}
	open, err := tlsDialFiles(addr, f)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	openR := bufio.NewReader(open)
	echo(open, openR, "open before the garbage")
	if n := up.accepted.Load(); n != 1 {
		t.Fatalf("upstream accepted %d connections for one client", n)
	}

	random := make([]byte, 4096)
	for {
		rand.Read(random)
		// Not a handshake (0x16) or alert (0x15) record type: those make a
		// TLS server wait for the rest of a record before it can object.
		if random[0] != 0x16 && random[0] != 0x15 {
			break
		}
	}
	garbage := []struct{ name, bytes string }{
		{"random bytes", string(random)},
		{"plaintext HTTP", "GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: e2e\r\n\r\n"},
		{"broken ClientHello", "\x16\x03\x01\x00\x05hello"},
	}
	for _, g := range garbage {
		c, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, g.bytes); err != nil {
			t.Fatalf("%s: write: %v", g.name, err)
		}
		// No FIN from this side: moat must end the connection by itself.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		reply, err := io.ReadAll(c)
		c.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%s: moat kept the connection open for 5 s", g.name)
		}
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("%s: connection ended with %v", g.name, err)
		}
		if len(reply) > 0 && reply[0] != 0x15 {
			t.Fatalf("%s: reply is not a TLS alert: %q", g.name, reply)
		}
	}
	// Each garbage connection is logged as a failed handshake, so moat is
	// done with all of them before the count is read.
	deadline := time.Now().Add(10 * time.Second)
	for m.count(`"reason":"handshake"`) < len(garbage) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d garbage connections logged as handshake failures", m.count(`"reason":"handshake"`), len(garbage))
		}
		time.Sleep(20 * time.Millisecond)
	}

	second, err := tlsDialFiles(addr, f)
	if err != nil {
		t.Fatalf("a good client after the garbage: %v", err)
	}
	defer second.Close()
	echo(second, bufio.NewReader(second), "second good client")
	if n := up.accepted.Load(); n != 2 {
		t.Fatalf("upstream accepted %d connections, want exactly the 2 good ones", n)
	}
	echo(open, openR, "still open after the garbage")
	if n := m.count(`"reason":"handshake"`); n != len(garbage) {
		t.Fatalf("%d connections failed their handshake, want the %d garbage ones", n, len(garbage))
	}
}
