package e2e

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// waitRefused waits until new connections to addr are refused: the
// listener is closed.
func waitRefused(t testing.TB, addr string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("dial %s after shutdown: %v, want refused", addr, err)
			}
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts connections %s after SIGTERM", addr, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitCounter polls /metrics until the counter reaches want.
func (o *opsServer) waitCounter(t testing.TB, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := value(o.metrics(t), name, nil)
		if got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", name, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHandshakeAfterSIGTERMIsServed: connections moat accepted before its
// listener closed are served to the end, even when their handshake starts
// after the close. The listener's file descriptor number is free by then,
// and the upstream socket each of them dials reuses it; its events must
// reach the connection, not a listener that no longer exists.
func TestHandshakeAfterSIGTERMIsServed(t *testing.T) {
	const n = 8
	up := startUpstream(t, upperEcho)
	o := startOps(t, up.addr(), "--shutdown-timeout", "20s")
	raw := make([]net.Conn, n)
	for i := range raw {
		c, err := net.Dial("tcp", o.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		raw[i] = c
	}
	o.waitCounter(t, "moat_connections_total", n) // moat accepted every one
	o.m.cmd.Process.Signal(syscall.SIGTERM)
	o.m.waitFor(t, "listener closed", 5*time.Second)
	waitRefused(t, o.addr, 2*time.Second)

	for i, c := range raw {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		tc := tls.Client(c, &tls.Config{RootCAs: o.roots, ServerName: "localhost"})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("connection %d: handshake after SIGTERM: %v", i, err)
		}
		msg := fmt.Sprintf("echo %d after sigterm", i)
		if _, err := tc.Write([]byte(msg)); err != nil {
			t.Fatalf("connection %d: write: %v", i, err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(tc, got); err != nil {
			t.Fatalf("connection %d: no echo after SIGTERM: %v", i, err)
		}
		if want := bytes.ToUpper([]byte(msg)); !bytes.Equal(got, want) {
			t.Fatalf("connection %d: echo %q, want %q", i, got, want)
		}
		tc.Close()
	}
	select {
	case <-o.m.done:
	case <-time.After(10 * time.Second):
		t.Fatal("moat did not exit after its last connection finished")
	}
	if code := o.m.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after every connection finished, want 0", code)
	}
}

// TestShutdownTimeoutResetsCutStreams: a download still running when
// --shutdown-timeout ends is reset, on the client's side and on the
// upstream's, so that neither mistakes the cut for the end of the stream;
// an idle connection is reset too; and moat exits 1, since it had to cut.
func TestShutdownTimeoutResetsCutStreams(t *testing.T) {
	upstreamErr := make(chan error, 2)
	up := startUpstream(t, func(c net.Conn) {
		buf := make([]byte, 16<<10)
		for {
			if _, err := c.Write(buf); err != nil {
				upstreamErr <- err
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	o := startOps(t, up.addr(), "--shutdown-timeout", "1s")
	download, err := o.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer download.Close()
	if _, err := io.ReadFull(download, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	o.m.cmd.Process.Signal(syscall.SIGTERM)
	download.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.Copy(io.Discard, download)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("download cut at the shutdown timeout ended with %v, want a reset (ECONNRESET)", err)
	}
	select {
	case err := <-upstreamErr:
		if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
			t.Fatalf("upstream's write after the cut: %v, want a reset", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream's connection was not ended by the cut")
	}
	select {
	case <-o.m.done:
	case <-time.After(5 * time.Second):
		t.Fatal("moat did not exit after the shutdown timeout")
	}
	if code := o.m.cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("exit code %d after cutting a connection at the shutdown timeout, want 1", code)
	}
	o.m.waitFor(t, `"reason":"shutdown"`, time.Second)
}
