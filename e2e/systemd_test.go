package e2e

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// notifySocket is a datagram socket standing in for systemd's
// NOTIFY_SOCKET: every message moat sends arrives on msgs.
type notifySocket struct {
	path string
	msgs chan string
}

func newNotifySocket(t testing.TB) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	n := &notifySocket{path: path, msgs: make(chan string, 256)}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				close(n.msgs)
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	t.Cleanup(func() { c.Close() })
	return n
}

// expect waits for a message holding want (a line such as "READY=1"),
// skipping others (watchdog pings), and returns it.
func (n *notifySocket) expect(t testing.TB, want string, d time.Duration) string {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				t.Fatalf("notify socket closed waiting for %q", want)
			}
			for line := range strings.SplitSeq(m, "\n") {
				if line == want {
					return m
				}
			}
		case <-deadline:
			t.Fatalf("no %q on NOTIFY_SOCKET within %s", want, d)
		}
	}
}

// activated runs moat under systemd-socket-activate, which binds
// 127.0.0.1 on a free port (returned), names the socket fdname, and
// executes moat with the socket on descriptor 3 (LISTEN_FDS, LISTEN_PID,
// LISTEN_FDNAMES) at the first connection, as a socket unit with
// Accept=no does. env adds variables (-E NAME=VALUE).
func activated(t testing.TB, fdname string, env []string, moatArgs ...string) (*process, int) {
	t.Helper()
	args := []string{"--fdname=" + fdname}
	for _, e := range env {
		args = append(args, "-E", e)
	}
	return activateOn(t, "127.0.0.1", args, moatArgs...)
}

// activateOn runs systemd-socket-activate listening on host and a port
// from freePort, with wrapperArgs, then moat with moatArgs, and returns
// once it listens. A port freePort found free can be taken by another
// test's connection before the wrapper binds it; then another is tried.
func activateOn(t testing.TB, host string, wrapperArgs []string, moatArgs ...string) (*process, int) {
	t.Helper()
	activate := needTool(t, "systemd-socket-activate")
	for attempt := 1; ; attempt++ {
		port := freePort(t)
		args := append([]string{"-l", net.JoinHostPort(host, strconv.Itoa(port))}, wrapperArgs...)
		p := start(t, activate, append(append(args, moatBin), moatArgs...)...)
		if listening(p, 10*time.Second) {
			return p, port
		}
		if attempt < 5 && strings.Contains(p.output(), "Address already in use") {
			continue
		}
		t.Fatalf("systemd-socket-activate did not listen on %s port %d:\n%s", host, port, p.output())
	}
}

// listening waits up to d for the wrapper's "Listening on" line.
func listening(p *process, d time.Duration) bool {
	deadline := time.After(d)
	for !strings.Contains(p.output(), "Listening on") {
		select {
		case <-p.lines:
		case <-p.done:
			return strings.Contains(p.output(), "Listening on")
		case <-deadline:
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
	return true
}

// TestSystemdSocketActivationRoundTrip: moat takes the socket systemd
// bound and named, and serves on it; the connection that woke it (queued
// in the socket's backlog while moat started) is answered, and curl's
// download through it arrives intact.
func TestSystemdSocketActivationRoundTrip(t *testing.T) {
	curl := needTool(t, "curl")
	f := serverFiles(t)
	blob := make([]byte, 1<<20)
	rand.Read(blob)
	m, port := activated(t, "web", nil, "server", "--listen", "systemd:web", "--target", httpUpstream(t, blob),
		"--cert", f.Cert, "--key", f.Key, "--disable-authentication")
	url := fmt.Sprintf("https://localhost:%d/blob", port)
	resolve := fmt.Sprintf("localhost:%d:127.0.0.1", port)
	out := filepath.Join(t.TempDir(), "blob")
	cmd := exec.Command(curl, "-sS", "--fail", "--max-time", "30", "--cacert", f.CA, "--resolve", resolve, "-o", out, url)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("curl through the activated socket: %v: %s", err, msg)
	}
	m.waitFor(t, fmt.Sprintf(`"listen":"127.0.0.1:%d"`, port), 5*time.Second)
	if got := fileSize(t, out); got != len(blob) {
		t.Fatalf("downloaded %d bytes, want %d", got, len(blob))
	}
	// openssl s_client on the same socket: the handshake and the certificate.
	s := sClient(t, fmt.Sprintf("127.0.0.1:%d", port), f, "-brief")
	s.waitFor(t, "Verification: OK", 10*time.Second)
}

// TestSystemdNotifyLifecycle: with NOTIFY_SOCKET, moat says READY=1 once it
// serves, RELOADING=1 with MONOTONIC_USEC then READY=1 around a SIGHUP
// reload, WATCHDOG=1 at half of WATCHDOG_USEC, and STOPPING=1 when SIGTERM
// begins the shutdown; it then exits 0.
func TestSystemdNotifyLifecycle(t *testing.T) {
	f := serverFiles(t)
	n := newNotifySocket(t)
	m, port := activated(t, "moat", []string{"NOTIFY_SOCKET=" + n.path, "WATCHDOG_USEC=400000"},
		"server", "--listen", "systemd:moat", "--target", "127.0.0.1:9", "--cert", f.Cert, "--key", f.Key, "--disable-authentication")
	c := dialRetry(t, "tcp", fmt.Sprintf("127.0.0.1:%d", port)) // wakes the activation
	defer c.Close()
	n.expect(t, "READY=1", 15*time.Second)
	m.waitFor(t, "moat is listening", 5*time.Second)
	for range 3 {
		n.expect(t, "WATCHDOG=1", 10*time.Second)
	}

	m.cmd.Process.Signal(syscall.SIGHUP)
	msg := n.expect(t, "RELOADING=1", 10*time.Second)
	usec := ""
	for line := range strings.SplitSeq(msg, "\n") {
		if v, ok := strings.CutPrefix(line, "MONOTONIC_USEC="); ok {
			usec = v
		}
	}
	if v, err := strconv.ParseUint(usec, 10, 64); err != nil || v == 0 {
		t.Fatalf("RELOADING=1 without a MONOTONIC_USEC: %q", msg)
	}
	n.expect(t, "READY=1", 10*time.Second)
	m.waitFor(t, "certificate reloaded", 5*time.Second)

	c.Close()
	m.cmd.Process.Signal(syscall.SIGTERM)
	n.expect(t, "STOPPING=1", 10*time.Second)
	select {
	case <-m.done:
	case <-time.After(20 * time.Second):
		t.Fatal("moat did not exit after SIGTERM")
	}
	if code := m.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
}

// TestSystemdListenRefusals: a socket name systemd did not pass, a socket
// handed over per connection (Accept=yes), and systemd:NAME outside socket
// activation each stop moat at start with one line naming --listen; a
// plaintext client-mode socket on every address needs --unsafe-listen.
func TestSystemdListenRefusals(t *testing.T) {
	f := serverFiles(t)
	server := func(name string) []string {
		return []string{"server", "--log-format", "console", "--listen", "systemd:" + name, "--target", "127.0.0.1:9", "--cert", f.Cert, "--key", f.Key, "--disable-authentication"}
	}
	wake := func(port int) {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second); err == nil {
			c.Close()
		}
	}
	// A socket systemd did not pass is the world being wrong (exit 1); a
	// plaintext socket beyond this host without --unsafe-listen is the
	// command line (exit 2).
	exited := func(p *process, want string, code int) {
		t.Helper()
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			t.Fatalf("moat did not exit; want %q", want)
		}
		if got := p.cmd.ProcessState.ExitCode(); got != code {
			t.Errorf("exit code %d, want %d", got, code)
		}
		if out := p.output(); !strings.Contains(out, "moat: --listen: ") || !strings.Contains(out, want) {
			t.Errorf("output %q, want one line naming --listen with %q", out, want)
		}
	}

	p, port := activated(t, "web", nil, server("admin")...)
	wake(port)
	exited(p, `systemd passed no socket named "admin" (it passed web)`, 1)

	p, port = activateOn(t, "127.0.0.1", []string{"--accept", "--fdname=web"}, server("web")...)
	wake(port) // with --accept, the wrapper stays and runs moat per connection
	p.waitFor(t, "moat: --listen: systemd:web: not a listening socket (the socket unit must have Accept=no)", 20*time.Second)
	p.waitFor(t, "died with code 1", 10*time.Second)

	p = start(t, moatBin, server("web")...)
	exited(p, "no sockets passed by systemd", 1)

	// Client mode: the plaintext side may not listen beyond this host.
	p, port = activateOn(t, "0.0.0.0", []string{"--fdname=app"},
		"client", "--log-format", "console", "--listen", "systemd:app", "--target", "127.0.0.1:9", "--cacert", f.CA)
	wake(port)
	exited(p, "systemd:app (listening on 0.0.0.0:", 2)
}

// TestRepeatedSingleValuedFlagRefused: --listen given twice stops moat at
// start with one line naming the flag and both values, exit code 2; the
// repeatable --allow-cn is still taken twice.
func TestRepeatedSingleValuedFlagRefused(t *testing.T) {
	f := serverFiles(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"server", "--listen", "127.0.0.1:1", "--listen", "127.0.0.1:2", "--target", "127.0.0.1:9", "--cert", f.Cert, "--key", f.Key, "--disable-authentication"},
			`moat: --listen: given more than once ("127.0.0.1:1", then "127.0.0.1:2"); it takes one value`},
		{[]string{"client", "--listen", "127.0.0.1:1", "--target", "127.0.0.1:9", "--target", "127.0.0.1:8"},
			`moat: --target: given more than once ("127.0.0.1:9", then "127.0.0.1:8"); it takes one value`},
		{[]string{"server", "--listen", "127.0.0.1:1", "--target", "127.0.0.1:9", "--self-signed", "--disable-authentication", "--shutdown-timeout", "1s", "--shutdown-timeout=2s"},
			`moat: --shutdown-timeout: given more than once ("1s", then "2s"); it takes one value`},
	} {
		args := append([]string{tc.args[0], "--log-format", "console"}, tc.args[1:]...)
		out, err := exec.Command(moatBin, args...).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%v: %v, want exit code 2", tc.args, err)
		}
		if got := strings.TrimSpace(string(out)); got != tc.want {
			t.Errorf("%v: output %q, want the one line %q", tc.args, got, tc.want)
		}
	}
	out, err := exec.Command(moatBin, "server", "--dry-run", "--listen", "127.0.0.1:1", "--target", "127.0.0.1:9", "--cert", f.Cert, "--key", f.Key,
		"--cacert", f.CA, "--allow-cn", "a", "--allow-cn", "b").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration is valid") {
		t.Fatalf("repeated --allow-cn: %v: %s", err, out)
	}
}

// fileSize is the size of the file at path.
func fileSize(t testing.TB, path string) int {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Size())
}

// TestSystemdActivatedClientMode: moat client takes a loopback socket from
// systemd as its plaintext --listen and carries the application's lines to
// openssl s_server over verified TLS, both ways.
func TestSystemdActivatedClientMode(t *testing.T) {
	pki := newClientPKI(t)
	srv, target := startSServer(t, "-cert", pki.server.Cert, "-key", pki.server.Key)
	_, port := activated(t, "app", nil, "client", "--listen", "systemd:app", "--target", target, "--cacert", pki.server.CA)
	a := dialApp(t, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	exchange(t, srv, a, "activated")
}
