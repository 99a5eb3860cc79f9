package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestStuckStderrDoesNotStallConnections: moat logs one line per
// connection from its event loops. With its stderr a pipe nobody reads (a
// stuck log collector), the pipe fills after a few hundred lines; moat must
// keep serving anyway, and the lines it kept come out once the pipe drains.
func TestStuckStderrDoesNotStallConnections(t *testing.T) {
	f := serverFiles(t)
	up := startUpstream(t, upperEcho)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	cmd := exec.Command(moatBin, "server", "--listen", addr, "--target", up.addr(), "--cert", f.Cert, "--key", f.Key,
		"--disable-authentication")
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitListening(t, addr)

	// ~280 bytes per line: 600 connections write about 170 KB of log,
	// several times what a pipe holds.
	const conns = 600
	start := time.Now()
	for i := 0; i < conns; i++ {
		c, err := tlsDialFiles(addr, f)
		if err != nil {
			t.Fatalf("connection %d with stderr unread: %v", i, err)
		}
		echoLine(t, c, fmt.Sprintf("conn %d", i))
		c.Close()
	}
	t.Logf("%d connections served in %s with stderr unread", conns, time.Since(start))

	closed := 0
	sc := bufio.NewScanner(pr)
	deadline := time.AfterFunc(10*time.Second, func() { pr.Close() })
	defer deadline.Stop()
	for closed < conns && sc.Scan() {
		if strings.Contains(sc.Text(), `"message":"connection closed"`) {
			closed++
		}
		if strings.Contains(sc.Text(), "dropped_log_lines") {
			t.Logf("moat reported dropped lines: %s", sc.Text())
			break
		}
	}
	if closed == 0 {
		t.Fatal("no connection line came out once stderr was read again")
	}
	t.Logf("%d connection lines read after the pipe drained", closed)
}

// waitListening waits until addr accepts TCP connections.
func waitListening(t testing.TB, addr string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("moat does not listen on %s", addr)
}
