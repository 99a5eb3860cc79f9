package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
)

// A Landlock domain cannot be left, so each test confines a child process:
// the test binary run again with sandboxChildEnv set, which enforces the
// rules it is given, tries what it is told, and prints the outcomes.
const sandboxChildEnv = "MOAT_SANDBOX_TEST_CHILD"

// childPlan is what the child enforces and tries.
type childPlan struct {
	Rules    Rules
	Read     []string // files to open for reading
	Write    []string // files to create
	Dial     []string // tcp addresses
	DialUnix []string // unix socket paths
	Listen   []string // tcp addresses to bind
}

// childResult holds "ok" or the errno's name for every attempt, in order.
type childResult struct {
	Status   Status
	Err      string
	Read     []string
	Write    []string
	Dial     []string
	DialUnix []string
	Listen   []string
}

func TestMain(m *testing.M) {
	if plan := os.Getenv(sandboxChildEnv); plan != "" {
		os.Exit(runChild(plan))
	}
	os.Exit(m.Run())
}

func runChild(planJSON string) int {
	var p childPlan
	if err := json.Unmarshal([]byte(planJSON), &p); err != nil {
		return 3
	}
	var res childResult
	st, err := Enforce(p.Rules)
	res.Status = st
	if err != nil {
		res.Err = err.Error()
	}
	for _, f := range p.Read {
		_, err := os.ReadFile(f)
		res.Read = append(res.Read, outcome(err))
	}
	for _, f := range p.Write {
		err := os.WriteFile(f, []byte("x"), 0o600)
		res.Write = append(res.Write, outcome(err))
	}
	for _, a := range p.Dial {
		c, err := net.Dial("tcp", a)
		if err == nil {
			c.Close()
		}
		res.Dial = append(res.Dial, outcome(err))
	}
	for _, a := range p.DialUnix {
		c, err := net.Dial("unix", a)
		if err == nil {
			c.Close()
		}
		res.DialUnix = append(res.DialUnix, outcome(err))
	}
	for _, a := range p.Listen {
		// Plain TCP: Landlock does not see Multipath TCP, which net.Listen
		// would pick by default.
		var lc net.ListenConfig
		lc.SetMultipathTCP(false)
		l, err := lc.Listen(context.Background(), "tcp", a)
		if err == nil {
			l.Close()
		}
		res.Listen = append(res.Listen, outcome(err))
	}
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

func outcome(err error) string {
	var errno syscall.Errno
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &errno):
		return errno.Error()
	}
	return err.Error()
}

// runConfined runs plan in a child and returns its outcomes.
func runConfined(t *testing.T, plan childPlan) childResult {
	t.Helper()
	b, _ := json.Marshal(plan)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), sandboxChildEnv+"="+string(b))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var res childResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("child output %q: %v", out, err)
	}
	return res
}

// needLandlock fails in CI, whose kernel has Landlock, and skips elsewhere
// when the kernel lacks it.
func needLandlock(t *testing.T, min int) int {
	t.Helper()
	abi, err := ABI()
	if abi < min {
		if os.Getenv("CI") != "" {
			t.Fatalf("Landlock ABI %d (%v); CI needs at least %d", abi, err, min)
		}
		t.Skipf("Landlock ABI %d (%v); this test needs %d", abi, err, min)
	}
	return abi
}

func listener(t *testing.T) (net.Listener, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return l, l.Addr().String()
}

func port(t *testing.T, addr string) uint16 {
	_, p, _ := net.SplitHostPort(addr)
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return uint16(n)
}

func TestEnforceConfinesFilesAndTCP(t *testing.T) {
	abi := needLandlock(t, 4)
	allowed, other := t.TempDir(), t.TempDir()
	inAllowed := filepath.Join(allowed, "sub", "tls.crt")
	os.MkdirAll(filepath.Dir(inAllowed), 0o700)
	os.WriteFile(inAllowed, []byte("cert"), 0o600)
	single := filepath.Join(other, "resolv.conf")
	os.WriteFile(single, []byte("x"), 0o600)
	outside := filepath.Join(other, "secret")
	os.WriteFile(outside, []byte("secret"), 0o600)
	_, okAddr := listener(t)
	_, deniedAddr := listener(t)
	freeAddr := func() string { _, a := listener(t); return a }
	bindOK, bindDenied := freeAddr(), freeAddr()

	res := runConfined(t, childPlan{
		Rules: Rules{
			ReadDirs:          []string{allowed},
			ReadFiles:         []string{single},
			OptionalReadFiles: []string{filepath.Join(other, "missing")},
			Network:           &Network{ConnectTCP: []uint16{port(t, okAddr)}, BindTCP: []uint16{port(t, bindOK)}},
		},
		Read:   []string{inAllowed, single, outside},
		Write:  []string{filepath.Join(allowed, "new")},
		Dial:   []string{okAddr, deniedAddr},
		Listen: []string{bindDenied},
	})
	if res.Err != "" || !res.Status.Enforced || !res.Status.Network || res.Status.ABI != abi {
		t.Fatalf("status %+v, error %q; want enforced with network at ABI %d", res.Status, res.Err, abi)
	}
	want := childResult{
		Read:   []string{"ok", "ok", syscall.EACCES.Error()},
		Write:  []string{syscall.EACCES.Error()},
		Dial:   []string{"ok", syscall.EACCES.Error()},
		Listen: []string{syscall.EACCES.Error()},
	}
	for _, c := range []struct {
		what      string
		got, want []string
	}{{"read", res.Read, want.Read}, {"write", res.Write, want.Write}, {"dial", res.Dial, want.Dial}, {"listen", res.Listen, want.Listen}} {
		if len(c.got) != len(c.want) {
			t.Fatalf("%s: %v, want %v", c.what, c.got, c.want)
		}
		for i := range c.got {
			if c.got[i] != c.want[i] {
				t.Errorf("%s #%d: %s, want %s", c.what, i, c.got[i], c.want[i])
			}
		}
	}
}

func TestNilNetworkLeavesTCPOpen(t *testing.T) {
	needLandlock(t, 4)
	dir := t.TempDir()
	_, addr := listener(t)
	res := runConfined(t, childPlan{Rules: Rules{ReadDirs: []string{dir}}, Dial: []string{addr}, Read: []string{"/etc/passwd"}})
	if !res.Status.Enforced || res.Status.Network {
		t.Fatalf("status %+v; want enforced without network", res.Status)
	}
	if res.Dial[0] != "ok" || res.Read[0] != syscall.EACCES.Error() {
		t.Fatalf("dial %v, read %v; want the dial through and /etc/passwd refused", res.Dial, res.Read)
	}
}

// TestConnectUnixKeepsTheTargetReachable: the unix target's directory is
// granted (enforced by kernels with ABI 9); on older kernels connecting
// was never restricted. Either way the target stays reachable.
func TestConnectUnixKeepsTheTargetReachable(t *testing.T) {
	needLandlock(t, 1)
	dir := t.TempDir()
	sock := filepath.Join(dir, "app.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	res := runConfined(t, childPlan{Rules: Rules{ConnectUnix: []string{sock}, Network: &Network{}}, DialUnix: []string{sock}})
	if res.Err != "" || !res.Status.Enforced || res.DialUnix[0] != "ok" {
		t.Fatalf("status %+v, error %q, unix dial %v", res.Status, res.Err, res.DialUnix)
	}
}

func TestMissingPathIsAnErrorAndRestrictsNothing(t *testing.T) {
	needLandlock(t, 1)
	res := runConfined(t, childPlan{
		Rules: Rules{ReadDirs: []string{filepath.Join(t.TempDir(), "gone")}},
		Read:  []string{"/etc/passwd"},
	})
	if res.Err == "" || res.Status.Enforced {
		t.Fatalf("status %+v, error %q; want an error and nothing enforced", res.Status, res.Err)
	}
	if res.Read[0] != "ok" {
		t.Fatalf("read after a failed Enforce: %s", res.Read[0])
	}
}
