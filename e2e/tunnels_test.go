package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moat-proxy/moat/internal/testpki"
)

// tunnelRig is moat run with a configuration file the test rewrites.
type tunnelRig struct {
	t      *testing.T
	path   string
	files  testpki.Files
	status string
	m      *process
}

func newTunnelRig(t *testing.T) *tunnelRig {
	t.Helper()
	f, err := testpki.NewCA().Issue("localhost", "127.0.0.1", "a.test", "b.test", "x.example.org").WritePEM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return &tunnelRig{t: t, path: filepath.Join(t.TempDir(), "moat.yaml"), files: f,
		status: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
}

// service is one server service of the file, without authentication.
func (r *tunnelRig) service(name, listen, target string, extra ...string) string {
	s := fmt.Sprintf("  - name: %s\n    mode: server\n    listen: %s\n    target: %s\n    cert: %s\n    key: %s\n    disable-authentication: true\n",
		name, listen, target, r.files.Cert, r.files.Key)
	for _, e := range extra {
		s += "    " + e + "\n"
	}
	return s
}

// write replaces the file with the status port and the services.
func (r *tunnelRig) write(services ...string) {
	r.t.Helper()
	body := "status: " + r.status + "\nservices:\n" + strings.Join(services, "")
	tmp := r.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Rename(tmp, r.path); err != nil {
		r.t.Fatal(err)
	}
}

func (r *tunnelRig) start() {
	r.t.Helper()
	r.m = startMoat(r.t, "run", "--config", r.path)
}

// reload sends SIGHUP and waits for the outcome's log line, the n-th of
// its kind.
func (r *tunnelRig) reload(outcome string, n int) {
	r.t.Helper()
	if err := r.m.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		r.t.Fatal(err)
	}
	r.waitCount(outcome, n)
}

func (r *tunnelRig) waitCount(s string, n int) {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for r.m.count(s) < n {
		if time.Now().After(deadline) {
			r.t.Fatalf("%q seen %d times, want %d", s, r.m.count(s), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *tunnelRig) ops() *opsServer {
	return &opsServer{m: r.m, status: r.status}
}

func (r *tunnelRig) dial(addr, name string) (*tls.Conn, error) {
	return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{RootCAs: rootsOf(r.t, r.files), ServerName: name})
}

// echoOnce sends a line through moat and expects the upper-case echo.
func (r *tunnelRig) echoOnce(addr, name, line string) error {
	c, err := r.dial(addr, name)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != strings.ToUpper(line)+"\n" {
		return fmt.Errorf("got %q, want %q", got, strings.ToUpper(line))
	}
	return nil
}

func addr127(t testing.TB) string { return fmt.Sprintf("127.0.0.1:%d", freePort(t)) }

func TestRunServesEveryServiceOfTheFile(t *testing.T) {
	curl := needTool(t, "curl")
	r := newTunnelRig(t)
	web := httpUpstream(t, []byte("web blob"))
	echo := startUpstream(t, upperEcho)
	webAddr, echoAddr := addr127(t), addr127(t)
	r.write(r.service("web", webAddr, web), r.service("echo", echoAddr, echo.addr()))
	r.start()

	port := strings.TrimPrefix(webAddr, "127.0.0.1:")
	out, err := exec.Command(curl, "-sS", "--fail", "--max-time", "20", "--cacert", r.files.CA,
		"--resolve", "localhost:"+port+":127.0.0.1", "https://localhost:"+port+"/blob").CombinedOutput()
	if err != nil || string(out) != "web blob" {
		t.Fatalf("curl through web: %v: %q", err, out)
	}
	if err := r.echoOnce(echoAddr, "localhost", "hello echo"); err != nil {
		t.Fatalf("through echo: %v", err)
	}
	r.m.waitFor(t, `"service":"web","client"`, 10*time.Second)
	r.m.waitFor(t, `"service":"echo","client"`, 10*time.Second)

	o := r.ops()
	fams := o.metrics(t)
	for _, svc := range []string{"web", "echo"} {
		if v := value(fams, "moat_connections_total", map[string]string{"service": svc}); v != 1 {
			t.Errorf("moat_connections_total{service=%q} = %v, want 1", svc, v)
		}
	}
	if code, body := o.get("/readyz"); code != 200 {
		t.Errorf("/readyz = %d %q, want 200", code, body)
	}
	if code, _ := o.get("/readyz?service=echo"); code != 200 {
		t.Errorf("/readyz?service=echo = %d, want 200", code)
	}
	if code, _ := o.get("/readyz?service=nope"); code != 404 {
		t.Errorf("/readyz?service=nope = %d, want 404", code)
	}
}

func TestRunReadinessNamesTheServiceNotReady(t *testing.T) {
	r := newTunnelRig(t)
	echo := startUpstream(t, upperEcho)
	dead := addr127(t) // nothing listens there
	r.write(r.service("up", addr127(t), echo.addr()), r.service("down", addr127(t), dead))
	r.start()
	o := r.ops()
	code, body := o.get("/readyz")
	if code != 503 || !strings.Contains(body, "down: upstream unreachable") || strings.Contains(body, "up:") {
		t.Errorf("/readyz = %d %q, want 503 naming down only", code, body)
	}
	if code, _ := o.get("/readyz?service=up"); code != 200 {
		t.Errorf("/readyz?service=up = %d, want 200", code)
	}
	if code, _ := o.get("/readyz?service=down"); code != 503 {
		t.Errorf("/readyz?service=down = %d, want 503", code)
	}
}

// heldEcho keeps one connection echoing a numbered line every 100 ms and
// reports the first failure.
type heldEcho struct {
	stop chan struct{}
	done chan error
}

func holdEcho(t *testing.T, r *tunnelRig, addr string) *heldEcho {
	c, err := r.dial(addr, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	h := &heldEcho{stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		defer c.Close()
		rd := bufio.NewReader(c)
		for i := 0; ; i++ {
			select {
			case <-h.stop:
				h.done <- nil
				return
			case <-time.After(100 * time.Millisecond):
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			line := fmt.Sprintf("ping %d", i)
			if _, err := c.Write([]byte(line + "\n")); err != nil {
				h.done <- fmt.Errorf("write %d: %w", i, err)
				return
			}
			got, err := rd.ReadString('\n')
			if err != nil || got != strings.ToUpper(line)+"\n" {
				h.done <- fmt.Errorf("echo %d: %q, %v", i, got, err)
				return
			}
		}
	}()
	return h
}

func (h *heldEcho) end(t *testing.T) {
	t.Helper()
	close(h.stop)
	if err := <-h.done; err != nil {
		t.Fatalf("held-open connection interrupted: %v", err)
	}
}

func TestRunTenReloadsNeverInterruptAnUnchangedService(t *testing.T) {
	r := newTunnelRig(t)
	steady := startUpstream(t, upperEcho)
	first, second := startUpstream(t, upperEcho), startUpstream(t, upperEcho)
	steadyAddr, movingAddr := addr127(t), addr127(t)
	targets := []*tcpUpstream{first, second}
	r.write(r.service("steady", steadyAddr, steady.addr()), r.service("moving", movingAddr, first.addr()))
	r.start()

	held := holdEcho(t, r, steadyAddr)
	for i := 1; i <= 10; i++ {
		// Each reload changes the other service's target; steady's
		// settings stay byte for byte.
		target := targets[i%2]
		r.write(r.service("steady", steadyAddr, steady.addr()), r.service("moving", movingAddr, target.addr()))
		r.reload("configuration reloaded", i)
		before := target.accepted.Load()
		if err := r.echoOnce(movingAddr, "localhost", fmt.Sprintf("after reload %d", i)); err != nil {
			t.Fatalf("moving after reload %d: %v", i, err)
		}
		if target.accepted.Load() != before+1 {
			t.Fatalf("reload %d: the new connection did not reach the new target", i)
		}
	}
	held.end(t)
	if steady.accepted.Load() != 1 {
		t.Errorf("steady's upstream saw %d connections, want the one held open", steady.accepted.Load())
	}
	if n := r.m.count(`"changed":["moving"]`); n != 10 {
		t.Errorf("%d reloads changed moving alone, want 10", n)
	}
	if r.m.count(`"service":"steady","client"`) != 0 {
		t.Errorf("the held-open connection was closed: %s", r.m.output())
	}
}

func TestRunRemovedServiceDrainsItsOpenConnection(t *testing.T) {
	r := newTunnelRig(t)
	keep, gone := startUpstream(t, upperEcho), startUpstream(t, upperEcho)
	keepAddr, goneAddr := addr127(t), addr127(t)
	r.write(r.service("keep", keepAddr, keep.addr()), r.service("gone", goneAddr, gone.addr(), "shutdown-timeout: 30s"))
	r.start()
	held := holdEcho(t, r, goneAddr)
	time.Sleep(300 * time.Millisecond) // a few echoes before the reload
	r.write(r.service("keep", keepAddr, keep.addr()))
	r.reload("configuration reloaded", 1)
	r.m.waitFor(t, `"removed":["gone"]`, 5*time.Second)
	r.m.waitFor(t, "service removed: stopped accepting", 5*time.Second)

	// The listener is gone: new connections are refused by the kernel.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", goneAddr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the removed service still accepts connections")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // the open one keeps echoing meanwhile
	held.end(t)
	r.m.waitFor(t, "service removed: drained", 10*time.Second)
	if strings.Contains(r.m.output(), "remaining connections reset") {
		t.Error("the removed service's connection was cut, not drained")
	}
	if err := r.echoOnce(keepAddr, "localhost", "still here"); err != nil {
		t.Errorf("keep after the reload: %v", err)
	}
}

func TestRunFailedReloadKeepsTheServicesAndIsCounted(t *testing.T) {
	r := newTunnelRig(t)
	echo := startUpstream(t, upperEcho)
	addr := addr127(t)
	r.write(r.service("echo", addr, echo.addr()))
	r.start()
	good, _ := os.ReadFile(r.path)
	bad := strings.Replace(string(good), "disable-authentication: true", "disable-authentication: true\n    max-concurrent-conns: many", 1)
	if err := os.WriteFile(r.path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	r.reload("configuration reload failed", 1)
	r.m.waitFor(t, `moat.yaml:10: max-concurrent-conns: `, time.Second)
	time.Sleep(2500 * time.Millisecond) // the file watcher must not report the same file again
	if n := r.m.count("configuration reload failed"); n != 1 {
		t.Errorf("the failing file was reported %d times, want once", n)
	}
	if err := r.echoOnce(addr, "localhost", "still serving"); err != nil {
		t.Fatalf("after the failed reload: %v", err)
	}
	if v := value(r.ops().metrics(t), "moat_reloads_total", map[string]string{"result": "failure"}); v != 1 {
		t.Errorf(`moat_reloads_total{result="failure"} = %v, want 1`, v)
	}
}

func TestRunReloadsWhenTheFileChanges(t *testing.T) {
	r := newTunnelRig(t)
	one, two := startUpstream(t, upperEcho), startUpstream(t, upperEcho)
	oneAddr, twoAddr := addr127(t), addr127(t)
	r.write(r.service("one", oneAddr, one.addr()))
	r.start()
	r.write(r.service("one", oneAddr, one.addr()), r.service("two", twoAddr, two.addr()))
	r.waitCount(`"added":["two"]`, 1)
	if err := r.echoOnce(twoAddr, "localhost", "added by the file"); err != nil {
		t.Fatal(err)
	}
	if two.accepted.Load() != 1 {
		t.Errorf("two's upstream saw %d connections, want 1", two.accepted.Load())
	}
}

func TestRunRefusesBadFilesNamingLineAndKey(t *testing.T) {
	f, err := testpki.NewCA().Issue("localhost").WritePEM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	svc := func(name, listen string, extra ...string) string {
		s := fmt.Sprintf("  - name: %s\n    mode: server\n    listen: %s\n    target: 127.0.0.1:9\n    cert: %s\n    key: %s\n    disable-authentication: true\n",
			name, listen, f.Cert, f.Key)
		for _, e := range extra {
			s += "    " + e + "\n"
		}
		return s
	}
	cases := []struct {
		name, body, want string
	}{
		{"unknown key", "services:\n" + svc("a", "127.0.0.1:1", "listn: x"), ":9: listn: unknown key"},
		{"list for one value", "services:\n" + svc("a", "127.0.0.1:1", "target: [a, b]")[0:0] + "  - name: a\n    mode: server\n    listen: [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n", ":4: listen: wrong type"},
		{"wrong type", "services:\n" + svc("a", "127.0.0.1:1", "max-concurrent-conns: lots"), ":9: max-concurrent-conns:"},
		{"bad duration", "services:\n" + svc("a", "127.0.0.1:1", "idle-timeout: 5"), ":9: idle-timeout:"},
		{"duplicate name", "services:\n" + svc("a", "127.0.0.1:1") + svc("a", "127.0.0.1:2"), ":9: name: service \"a\" is already defined at line 2"},
		{"same address", "services:\n" + svc("a", "127.0.0.1:1") + svc("b", "127.0.0.1:1"), ":11: listen: 127.0.0.1:1 is also the listen address"},
		{"unknown top key", "stauts: x\nservices:\n" + svc("a", "127.0.0.1:1"), ":1: stauts: unknown key"},
		{"bad mode", "services:\n  - name: a\n    mode: tunnel\n", ":3: mode: \"tunnel\""},
		{"client sni", "services:\n  - name: a\n    mode: client\n    sni: a.test\n", ":4: sni: only a server service"},
		{"missing cert", "services:\n" + svc("a", "127.0.0.1:1")[:0] + "  - name: a\n    mode: server\n    listen: 127.0.0.1:1\n    target: 127.0.0.1:9\n    cert: /nonexistent.crt\n    key: /nonexistent.key\n    disable-authentication: true\n", ":6: cert:"},
		{"per-service status", "services:\n" + svc("a", "127.0.0.1:1", "status: 127.0.0.1:2"), ":9: status: is set once for the process"},
		{"yaml syntax", "services:\n  - name: a\n   mode: [\n", "moat.yaml: line"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "moat.yaml")
			if err := os.WriteFile(path, []byte(c.body), 0o600); err != nil {
				t.Fatal(err)
			}
			// What the file says is a usage error, as a flag's value would
			// be (exit 2); a file it names that cannot be read is a runtime
			// failure (exit 1), as for `moat server --cert`.
			code := 2
			if c.name == "missing cert" {
				code = 1
			}
			out, err := exec.Command(moatBin, "run", "--config", path, "--dry-run").CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() != code {
				t.Fatalf("exit %v, want %d; output %q", err, code, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], path) || !strings.Contains(lines[0], c.want) {
				t.Errorf("output %q, want one line naming %s and %q", out, path, c.want)
			}
		})
	}
}

// TestRunReloadsOnAConfigMapSwap: mounted from a ConfigMap, moat.yaml is a
// symlink through ..data, and the kubelet's update renames a new ..data
// over the old one without touching moat.yaml itself. moat run sees that
// without a signal, as it sees a Secret's.
func TestRunReloadsOnAConfigMapSwap(t *testing.T) {
	r := newTunnelRig(t)
	one, two := startUpstream(t, upperEcho), startUpstream(t, upperEcho)
	oneAddr, twoAddr := addr127(t), addr127(t)
	vol, gen := t.TempDir(), 0
	publish := func(services ...string) {
		gen++
		ts := fmt.Sprintf("..2026_12_03_00_00_%02d.%d", gen, 1000+gen)
		if err := os.Mkdir(filepath.Join(vol, ts), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(vol, ts, "moat.yaml"), "status: "+r.status+"\nservices:\n"+strings.Join(services, ""))
		tmp := filepath.Join(vol, "..data_tmp")
		if err := os.Symlink(ts, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(vol, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish(r.service("one", oneAddr, one.addr()))
	r.path = filepath.Join(vol, "moat.yaml")
	if err := os.Symlink(filepath.Join("..data", "moat.yaml"), r.path); err != nil {
		t.Fatal(err)
	}
	r.start()
	publish(r.service("one", oneAddr, one.addr()), r.service("two", twoAddr, two.addr()))
	r.waitCount(`"added":["two"]`, 1)
	if err := r.echoOnce(twoAddr, "localhost", "added by the kubelet"); err != nil {
		t.Fatal(err)
	}
	if err := r.echoOnce(oneAddr, "localhost", "still here"); err != nil {
		t.Fatal(err)
	}
}

// TestRunConfigThatCannotBeReadIsARuntimeFailure: a missing file, or one
// far too large to be a configuration (/dev/zero never ends), stops moat run
// with exit code 1 and one line naming --config and the file.
func TestRunConfigThatCannotBeReadIsARuntimeFailure(t *testing.T) {
	for _, path := range []string{filepath.Join(t.TempDir(), "absent.yaml"), "/dev/zero"} {
		out, err := exec.Command(moatBin, "run", "--config", path, "--dry-run").CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 1 {
			t.Fatalf("%s: exit %v, want 1; output %q", path, err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], "--config: ") || !strings.Contains(lines[0], path) {
			t.Errorf("%s: output %q, want one line naming --config and the file", path, out)
		}
	}
}

func TestRunDryRunChecksWithoutBinding(t *testing.T) {
	f, err := testpki.NewCA().Issue("localhost").WritePEM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	path := filepath.Join(t.TempDir(), "moat.yaml")
	body := fmt.Sprintf("services:\n  - name: a\n    mode: server\n    listen: %s\n    target: localhost:9\n    cert: %s\n    key: %s\n    disable-authentication: true\n",
		busy.Addr(), f.Cert, f.Key)
	os.WriteFile(path, []byte(body), 0o600)
	out, err := exec.Command(moatBin, "run", "--config", path, "--dry-run").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "configuration is valid") {
		t.Fatalf("dry run on a busy address: %v: %s", err, out)
	}
	body = strings.Replace(body, "localhost:9", "no-such-host.invalid:9", 1)
	os.WriteFile(path, []byte(body), 0o600)
	out, err = exec.Command(moatBin, "run", "--config", path, "--dry-run").CombinedOutput()
	if err == nil || !strings.Contains(string(out), ":5: target:") {
		t.Fatalf("dry run with an unresolvable target: %v: %s", err, out)
	}
}

func TestRunChangedListenRebindsAndKeepsTheOpenConnection(t *testing.T) {
	r := newTunnelRig(t)
	up := startUpstream(t, upperEcho)
	oldAddr, newAddr := addr127(t), addr127(t)
	r.write(r.service("svc", oldAddr, up.addr()))
	r.start()
	held := holdEcho(t, r, oldAddr)
	r.write(r.service("svc", newAddr, up.addr()))
	r.reload("configuration reloaded", 1)
	r.m.waitFor(t, `"changed":["svc"]`, 5*time.Second)
	if err := r.echoOnce(newAddr, "localhost", "on the new address"); err != nil {
		t.Fatalf("new address: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", oldAddr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the old address still accepts")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	held.end(t) // the connection made on the old address kept flowing
}

func TestRunChangedAllowListAppliesToNewConnectionsOnly(t *testing.T) {
	r := newTunnelRig(t)
	ca := newPKI(t, "clients CA")
	alice, aliceKey := ca.issue(t, "alice", nil)
	bob, bobKey := ca.issue(t, "bob", nil)
	up := startUpstream(t, upperEcho)
	addr := addr127(t)
	svc := func(allowed string) string {
		return fmt.Sprintf("  - name: mtls\n    mode: server\n    listen: %s\n    target: %s\n    cert: %s\n    key: %s\n    cacert: %s\n    allow-cn: [%s]\n",
			addr, up.addr(), r.files.Cert, r.files.Key, ca.file, allowed)
	}
	r.write(svc("alice"))
	r.start()
	dial := func(cert, key string) (*tls.Conn, error) {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
			&tls.Config{RootCAs: rootsOf(t, r.files), ServerName: "localhost", Certificates: []tls.Certificate{pair}})
		if err != nil {
			return nil, err
		}
		// TLS 1.3: a refused client certificate shows on the first read.
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("hi\n")); err != nil {
			return nil, err
		}
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	held, err := dial(alice, aliceKey)
	if err != nil {
		t.Fatalf("alice before the reload: %v", err)
	}
	defer held.Close()
	if c, err := dial(bob, bobKey); err == nil {
		c.Close()
		t.Fatal("bob was let in before the reload")
	}
	r.write(svc("bob"))
	r.reload("configuration reloaded", 1)
	if c, err := dial(bob, bobKey); err != nil {
		t.Fatalf("bob after the reload: %v", err)
	} else {
		c.Close()
	}
	if c, err := dial(alice, aliceKey); err == nil {
		c.Close()
		t.Fatal("alice was let in after the reload")
	}
	// alice's connection from before keeps the settings it started with.
	if _, err := held.Write([]byte("still alice\n")); err != nil {
		t.Fatal(err)
	}
	held.SetDeadline(time.Now().Add(10 * time.Second))
	if got, err := bufio.NewReader(held).ReadString('\n'); err != nil || got != "STILL ALICE\n" {
		t.Fatalf("alice's open connection: %q, %v", got, err)
	}
}
