// Package e2e drives the real moat binary with real peers: openssl
// s_client/s_server, curl, and Go clients and servers on 127.0.0.1.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// moatBin is the moat binary built once for the whole package.
var moatBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "moat-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	moatBin = filepath.Join(dir, "moat")
	build := exec.Command("go", "build", "-o", moatBin, "..")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build moat:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needTool returns the path of a command-line peer. Outside CI a missing
// tool skips the test; in CI (CI=true) it fails, since .ci/run installs
// every peer and a missing one means the suite did not run.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed; .ci/run must install it", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return p
}

// freePort returns a port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	port, err := pickPort("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// handedOut holds every port pickPort returned in this test binary. The
// kernel may offer a port again as soon as its listener closes, so two picks
// made before either is bound (a server's status port and a client's) could
// otherwise collide.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// pickPort returns a port that addr's host (port 0) can bind, never one it
// returned before. It picks below the kernel's ephemeral range when it can:
// a port from that range, free a moment ago, may become the source port of
// any outgoing connection (moat dialling its upstream, curl, openssl) before
// the process meant to listen on it binds it.
func pickPort(addr string) (int, error) {
	handedOut.Lock()
	defer handedOut.Unlock()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	low := ephemeralLow()
	for range 200 {
		port := 10000 + rand.IntN(low-10000)
		if handedOut.ports[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			continue // in use
		}
		l.Close()
		handedOut.ports[port] = true
		return port, nil
	}
	for { // below the range is crowded: let the kernel choose
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port, nil
		}
	}
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768 by
// default), above 10000.
func ephemeralLow() int {
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 11000 {
				return n
			}
		}
	}
	return 32768
}

// process is a child process whose combined output is captured line by line,
// so a test can wait for a line instead of sleeping.
type process struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex
	out   bytes.Buffer
	lines chan string
	done  chan struct{}
}

// start runs name with args; the process is killed when the test ends.
func start(t testing.TB, name string, args ...string) *process {
	t.Helper()
	return startStdout(t, nil, name, args...)
}

// startStdout is start with stdout sent to w instead of the captured
// lines, which then hold stderr alone; a nil w captures both.
func startStdout(t testing.TB, w io.Writer, name string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(name, args...), lines: make(chan string, 4096), done: make(chan struct{})}
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if w != nil {
		p.cmd.Stdout = w
	}
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		p.cmd.Wait()
		pw.Close()
		<-readDone // every line is in out before done closes
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("output of %s:\n%s", filepath.Base(name), p.output())
		}
	})
	return p
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitFor waits until the output contains s, failing the test after d.
func (p *process) waitFor(t testing.TB, s string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if strings.Contains(p.output(), s) {
			return
		}
		select {
		case <-p.lines:
		case <-p.done:
			if strings.Contains(p.output(), s) {
				return
			}
			t.Fatalf("process exited before printing %q", s)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("no %q within %s", s, d)
}

// count returns how many times s appears in the output so far.
func (p *process) count(s string) int { return strings.Count(p.output(), s) }

// startMoat runs the moat binary and waits until it listens.
func startMoat(t testing.TB, args ...string) *process {
	t.Helper()
	p := start(t, moatBin, args...)
	p.waitFor(t, "moat is listening", 10*time.Second)
	return p
}

// dialRetry connects to addr, retrying briefly while a server starts.
func dialRetry(t testing.TB, network, addr string) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			return c
		}
		if ctx.Err() != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
