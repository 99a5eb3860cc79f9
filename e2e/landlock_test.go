package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moat-proxy/moat/sandbox"
)

// needLandlock fails in CI, whose kernel has Landlock with the network
// rules (ABI 4), and skips elsewhere when the kernel lacks it.
func needLandlock(t *testing.T) int {
	t.Helper()
	abi, err := sandbox.ABI()
	if abi < 4 {
		if os.Getenv("CI") != "" {
			t.Fatalf("Landlock ABI %d (%v); CI needs 4 or newer", abi, err)
		}
		t.Skipf("Landlock ABI %d (%v); this test needs 4 or newer", abi, err)
	}
	return abi
}

// unixUpstream serves an upper-casing echo on a unix socket.
func unixUpstream(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "app.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	serveUpstream(t, ln, upperEcho)
	return sock
}

// pointAt replaces link with a symlink to target, atomically.
func pointAt(t *testing.T, target, link string) {
	t.Helper()
	tmp := link + ".new"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
}

// TestLandlockConfinesReloadsToTheCertificateDirectories runs the real
// binary twice, with Landlock (the default) and with --disable-landlock,
// and moves the certificate out of the directory it had at start-up, to a
// directory moat was never told about. Confined, the reload fails with a
// permission error and the old certificate stays in service, while
// reloads inside the directory, the status port and the unix target keep
// working; unconfined, the same move reloads.
func TestLandlockConfinesReloadsToTheCertificateDirectories(t *testing.T) {
	abi := needLandlock(t)
	for _, confined := range []bool{true, false} {
		t.Run(fmt.Sprintf("landlock=%v", confined), func(t *testing.T) {
			ca := newPKI(t, "landlock CA")
			roots := x509.NewCertPool()
			roots.AddCert(ca.cert)
			certDir, elsewhere := t.TempDir(), t.TempDir()
			certFile, keyFile := filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key")
			c1, k1 := ca.serverCert(t)
			copyFile(t, c1, certFile)
			copyFile(t, k1, keyFile)
			sock := unixUpstream(t)
			addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			o := &opsServer{addr: addr, status: fmt.Sprintf("127.0.0.1:%d", freePort(t)), roots: roots}
			args := []string{"server", "--listen", addr, "--target", "unix:" + sock, "--cert", certFile, "--key", keyFile,
				"--disable-authentication", "--status", o.status}
			if !confined {
				args = append(args, "--disable-landlock")
			}
			o.m = startMoat(t, args...)
			m := o.m
			if confined {
				m.waitFor(t, fmt.Sprintf(`"landlock_abi":%d`, abi), time.Second)
				m.waitFor(t, `"network":true`, time.Second)
			} else {
				m.waitFor(t, "Landlock is off (--disable-landlock)", time.Second)
			}
			want := 0.0
			if confined {
				want = 1
			}
			if got := value(o.metrics(t), "moat_sandbox_enforced", nil); got != want {
				t.Fatalf("moat_sandbox_enforced = %v, want %v", got, want)
			}
			relay := func(tag string) {
				t.Helper()
				c, err := o.dial()
				if err != nil {
					t.Fatalf("%s: %v", tag, err)
				}
				defer c.Close()
				echoLine(t, c, tag)
			}
			relay("through the unix target")

			// A reload inside the directory works either way.
			c2, k2 := ca.serverCert(t)
			copyFile(t, c2, certFile)
			copyFile(t, k2, keyFile)
			second := leafSerial(t, c2) // serverCert reuses its file names
			m.cmd.Process.Signal(sighup)
			waitSerial(t, addr, roots, second, reloadLatency)

			// The certificate moves to a directory moat was not given.
			c3, k3 := ca.serverCert(t)
			copyFile(t, c3, filepath.Join(elsewhere, "tls.crt"))
			copyFile(t, k3, filepath.Join(elsewhere, "tls.key"))
			pointAt(t, filepath.Join(elsewhere, "tls.key"), keyFile)
			pointAt(t, filepath.Join(elsewhere, "tls.crt"), certFile)
			m.cmd.Process.Signal(sighup)
			if !confined {
				waitSerial(t, addr, roots, leafSerial(t, c3), reloadLatency)
				return
			}
			m.waitFor(t, "certificate reload failed", 5*time.Second)
			m.waitFor(t, "permission denied", time.Second)
			if got := servedSerial(t, addr, roots); got.Cmp(second) != 0 {
				t.Fatalf("after a denied reload moat serves serial %s, want the previous %s", got, second)
			}
			if code, body := o.get("/readyz"); code != 200 {
				t.Fatalf("/readyz under Landlock: %d %s", code, body)
			}
			fams := o.metrics(t)
			if value(fams, "process_open_fds", nil) <= 0 {
				t.Fatal("process metrics missing under Landlock: /proc/self is not readable")
			}
			relay("after the denied reload")
		})
	}
}

// TestLandlockKeepsSecretVolumeSwapsWorking: the kubelet's ..data swap
// replaces the targets of a Secret volume's symlinks with a directory made
// after moat started; being inside the volume directory, it reloads.
func TestLandlockKeepsSecretVolumeSwapsWorking(t *testing.T) {
	needLandlock(t)
	ca := newPKI(t, "landlock secret CA")
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	c1, k1 := ca.serverCert(t)
	vol := newSecretVolume(t, c1, k1, ca.file)
	up := startUpstream(t, upperEcho)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	m := startMoat(t, "server", "--listen", addr, "--target", up.addr(), "--cert-dir", vol.dir, "--disable-authentication")
	m.waitFor(t, "Landlock enforced", time.Second)
	for i := 0; i < 2; i++ {
		c, k := ca.serverCert(t)
		vol.swap(t, c, k, ca.file)
		waitSerial(t, addr, roots, leafSerial(t, c), reloadLatency)
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	echoLine(t, conn, "after two swaps")
	if n := m.count("certificate reload failed"); n != 0 {
		t.Fatalf("%d reload failures under Landlock", n)
	}
}
