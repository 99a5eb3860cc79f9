package e2e

import (
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-proxy/moat/internal/testpki"
)

// These tests rotate the CA bundle of `moat client --cacert` under a
// running moat client, whose peer is a real moat server presenting a
// certificate of the second CA, in front of an upper-casing echo.

// rootsPEM is the PEM bundle of the given CAs' root certificates.
func rootsPEM(cas ...*testpki.CA) string {
	var b strings.Builder
	for _, ca := range cas {
		b.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}))
	}
	return b.String()
}

// garbageBundle looks like PEM and does not parse.
const garbageBundle = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"

// replaceFile writes content to path through a temporary file and a rename,
// as rotation tooling does.
func replaceFile(t testing.TB, path, content string) {
	t.Helper()
	write(t, path+".tmp", content)
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// startCAServer runs a moat server presenting a certificate of ca for
// 127.0.0.1, in front of an upper-casing echo, with extra flags (client
// authentication), and returns its address.
func startCAServer(t testing.TB, ca *testpki.CA, extra ...string) string {
	t.Helper()
	srv, err := ca.Issue("127.0.0.1").WritePEM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	up := startUpstream(t, upperEcho)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startMoat(t, append([]string{"server", "--listen", addr, "--target", up.addr(), "--cert", srv.Cert, "--key", srv.Key}, extra...)...)
	return addr
}

// readText returns a file's content.
func readText(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// loggedTogether reports whether one line of p's output holds both a and b.
func loggedTogether(p *process, a, b string) bool {
	for _, line := range strings.Split(p.output(), "\n") {
		if strings.Contains(line, a) && strings.Contains(line, b) {
			return true
		}
	}
	return false
}

// refusedThrough checks that a new connection through the client is closed
// without a byte, and that the client logged its n-th unknown-CA refusal.
func refusedThrough(t testing.TB, moat *process, listen string, n int) {
	t.Helper()
	a := dialApp(t, "tcp", listen)
	a.writeLine(t, "must not pass")
	a.expectClosed(t)
	waitCount(t, moat, `"auth_refused":"unknown-ca"`, n)
}

// echoedThrough opens a new connection through the client and checks that
// a line comes back upper-cased; it returns the connection, still open.
func echoedThrough(t testing.TB, listen, line string) *app {
	t.Helper()
	a := dialApp(t, "tcp", listen)
	a.writeLine(t, line)
	a.expectLine(t, strings.ToUpper(line))
	return a
}

// TestClientCABundleReloadsOnSIGHUP: a client presenting no certificate
// reloads --cacert on SIGHUP (the bundle is a symlink into a directory moat
// does not watch, so the signal is what makes it look). A server of a CA
// outside the bundle is refused until the bundle names that CA; a bundle
// that does not parse is a failed reload, logged and counted, after which
// the previous bundle still admits the server; rotating the CA out again
// refuses new connections while an open one keeps flowing.
func TestClientCABundleReloadsOnSIGHUP(t *testing.T) {
	ca1, ca2 := testpki.NewNamedCA("client bundle CA one"), testpki.NewNamedCA("client bundle CA two")
	server := startCAServer(t, ca2, "--disable-authentication")
	hidden, shown := t.TempDir(), t.TempDir()
	bundle := filepath.Join(hidden, "bundle.pem")
	replaceFile(t, bundle, rootsPEM(ca1))
	cacert := filepath.Join(shown, "bundle.pem")
	if err := os.Symlink(bundle, cacert); err != nil {
		t.Fatal(err)
	}
	ops := &opsServer{status: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	moat, listen := startClient(t, server, "--cacert", cacert, "--status", ops.status)
	if !strings.Contains(moat.output(), `"client_certificate":false`) {
		t.Fatal(`the start-up line does not say "client_certificate":false`)
	}
	refusedThrough(t, moat, listen, 1)

	replaceFile(t, bundle, rootsPEM(ca2))
	if err := moat.cmd.Process.Signal(sighup); err != nil {
		t.Fatal(err)
	}
	moat.waitFor(t, "CA bundle reloaded", step)
	open := echoedThrough(t, listen, "after the rotation")

	replaceFile(t, bundle, garbageBundle)
	if err := moat.cmd.Process.Signal(sighup); err != nil {
		t.Fatal(err)
	}
	const failed = "CA bundle reload failed; the previous bundle stays in service"
	moat.waitFor(t, failed, step)
	if !loggedTogether(moat, failed, cacert) {
		t.Error("the failed reload does not name the bundle")
	}
	echoedThrough(t, listen, "after the failed reload")
	// The watcher's periodic check may see the garbage too: each failure
	// logged is one counted.
	if got, logged := value(ops.metrics(t), "moat_reloads_total", map[string]string{"result": "failure"}), moat.count(failed); got < 1 || got != float64(logged) {
		t.Errorf(`moat_reloads_total{result="failure"} = %v, want the %d failures logged`, got, logged)
	}

	replaceFile(t, bundle, rootsPEM(ca1))
	if err := moat.cmd.Process.Signal(sighup); err != nil {
		t.Fatal(err)
	}
	waitCount(t, moat, "CA bundle reloaded", 2)
	refusedThrough(t, moat, listen, 2)
	open.writeLine(t, "opened before")
	open.expectLine(t, "OPENED BEFORE")
}

// TestClientWithCertificateReloadsCABundleOnSecretSwap: a client presenting
// --cert/--key from a Kubernetes Secret mount reloads ca.crt with them when
// the kubelet swaps ..data, with no signal: the server, which requires
// that client certificate, is refused while the bundle lacks its CA and
// reached once it has it; a swap to a bundle that does not parse keeps the
// previous one, logged once and counted once.
func TestClientWithCertificateReloadsCABundleOnSecretSwap(t *testing.T) {
	clientCA, ca1, ca2 := testpki.NewNamedCA("client identity CA"), testpki.NewNamedCA("server CA one"), testpki.NewNamedCA("server CA two")
	id, err := clientCA.IssueClient("moat-client").WritePEM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	server := startCAServer(t, ca2, "--cacert", id.CA, "--allow-cn", "moat-client")
	certPEM, keyPEM := readText(t, id.Cert), readText(t, id.Key)
	secret := func(ca string) map[string]string {
		return map[string]string{"tls.crt": certPEM, "tls.key": keyPEM, "ca.crt": ca}
	}
	vol := newKubeDir(t, secret(rootsPEM(ca1)))
	ops := &opsServer{status: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	moat, listen := startClient(t, server, "--cert", vol.path("tls.crt"), "--key", vol.path("tls.key"),
		"--cacert", vol.path("ca.crt"), "--status", ops.status)
	if !strings.Contains(moat.output(), `"client_certificate":true`) {
		t.Fatal(`the start-up line does not say "client_certificate":true`)
	}
	refusedThrough(t, moat, listen, 1)

	vol.swap(t, secret(rootsPEM(ca1, ca2)))
	moat.waitFor(t, "certificate reloaded", step)
	open := echoedThrough(t, listen, "after the swap")

	vol.swap(t, secret(garbageBundle))
	const failed = "certificate reload failed; the previous certificate stays in service"
	moat.waitFor(t, failed, step)
	if !loggedTogether(moat, failed, vol.path("ca.crt")) {
		t.Error("the failed reload does not name ca.crt")
	}
	echoedThrough(t, listen, "after the failed reload")
	open.writeLine(t, "opened before")
	open.expectLine(t, "OPENED BEFORE")
	if got := value(ops.metrics(t), "moat_reloads_total", map[string]string{"result": "failure"}); got != 1 {
		t.Errorf(`moat_reloads_total{result="failure"} = %v, want 1`, got)
	}
	if n := moat.count(failed); n != 1 {
		t.Errorf("the failed reload was logged %d times, want once", n)
	}
}

// TestRunClientServiceReloadsCABundle: a client service of moat run
// --config reloads its cacert when the file is replaced, with no signal,
// as moat client does; a bundle that does not parse keeps the previous one.
func TestRunClientServiceReloadsCABundle(t *testing.T) {
	ca1, ca2 := testpki.NewNamedCA("run bundle CA one"), testpki.NewNamedCA("run bundle CA two")
	server := startCAServer(t, ca2, "--disable-authentication")
	bundle := filepath.Join(t.TempDir(), "bundle.pem")
	replaceFile(t, bundle, rootsPEM(ca1))
	listen := addr127(t)
	r := newTunnelRig(t)
	r.write(fmt.Sprintf("  - name: db\n    mode: client\n    listen: %s\n    target: %s\n    cacert: %s\n", listen, server, bundle))
	r.start()
	refusedThrough(t, r.m, listen, 1)

	replaceFile(t, bundle, rootsPEM(ca2))
	r.m.waitFor(t, "CA bundle reloaded", step)
	if !loggedTogether(r.m, "CA bundle reloaded", `"service":"db"`) {
		t.Error("the reload is not logged as the db service's")
	}
	echoedThrough(t, listen, "after the rotation")

	replaceFile(t, bundle, garbageBundle)
	r.m.waitFor(t, "CA bundle reload failed; the previous bundle stays in service", step)
	echoedThrough(t, listen, "after the failed reload")
}
