package e2e

import (
	"crypto/x509"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// withoutLandlockEnv makes the test binary, run with it set to a path,
// become that program with the Landlock system calls answering ENOSYS, as
// on a kernel built without Landlock: a seccomp filter, installed on the
// thread that then execs, is inherited by the program.
const withoutLandlockEnv = "MOAT_E2E_EXEC_WITHOUT_LANDLOCK"

// The Landlock system calls have the same numbers on every architecture.
const (
	sysLandlockCreateRuleset = 444
	sysLandlockAddRule       = 445
	sysLandlockRestrictSelf  = 446
)

func init() {
	prog := os.Getenv(withoutLandlockEnv)
	if prog == "" {
		return
	}
	runtime.LockOSThread()
	if err := denyLandlock(); err != nil {
		fmt.Fprintln(os.Stderr, "seccomp:", err)
		os.Exit(3)
	}
	os.Unsetenv(withoutLandlockEnv)
	err := syscall.Exec(prog, append([]string{prog}, os.Args[1:]...), os.Environ())
	fmt.Fprintln(os.Stderr, "exec:", err)
	os.Exit(3)
}

// denyLandlock installs a seccomp filter on this thread: the three
// Landlock calls fail with ENOSYS, everything else is allowed.
func denyLandlock() error {
	ret := func(k uint32) unix.SockFilter { return unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: k} }
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0}, // seccomp_data.nr
		{Code: unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, K: sysLandlockCreateRuleset, Jt: 0, Jf: 2},
		{Code: unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K, K: sysLandlockRestrictSelf, Jt: 1, Jf: 0},
		ret(unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)),
		ret(unix.SECCOMP_RET_ALLOW),
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return err
	}
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&prog))); e != 0 {
		return e
	}
	return nil
}

// TestWithoutLandlockMoatRunsAndSaysSo: on a kernel without Landlock
// (played by a seccomp filter) moat starts, serves, logs once that it runs
// unconfined, and exports moat_sandbox_enforced 0.
func TestWithoutLandlockMoatRunsAndSaysSo(t *testing.T) {
	ca := newPKI(t, "no-landlock CA")
	cert, key := ca.serverCert(t)
	up := startUpstream(t, upperEcho)
	o := startOpsWithout(t, ca, cert, key, up.addr())
	o.m.waitFor(t, "Landlock is not available: moat runs unconfined", time.Second)
	if n := o.m.count("Landlock"); n != 1 {
		t.Fatalf("%d lines about Landlock, want 1:\n%s", n, o.m.output())
	}
	if got := value(o.metrics(t), "moat_sandbox_enforced", nil); got != 0 {
		t.Fatalf("moat_sandbox_enforced = %v, want 0", got)
	}
	c, err := o.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoLine(t, c, "unconfined but serving")
}

func startOpsWithout(t *testing.T, ca *pki, cert, key, upstream string) *opsServer {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	o := &opsServer{addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), status: fmt.Sprintf("127.0.0.1:%d", freePort(t)), roots: roots}
	t.Setenv(withoutLandlockEnv, moatBin)
	o.m = start(t, self, "server", "--listen", o.addr, "--target", upstream, "--cert", cert, "--key", key,
		"--disable-authentication", "--status", o.status)
	o.m.waitFor(t, "moat is listening", 10*time.Second)
	return o
}
