package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moat-proxy/moat/internal/testpki"
)

// TestCRLFromOpenSSLRefusesRevokedClient: a CRL made by `openssl ca
// -gencrl` after `openssl ca -revoke` makes moat refuse the revoked client
// certificate inside the handshake (curl fails, openssl s_client sees
// bad_certificate), log auth_refused "revoked" and count it, without the
// upstream ever seeing a connection; the unrevoked certificate of the same
// CA still gets through, and the CRL's nextUpdate is exported.
func TestCRLFromOpenSSLRefusesRevokedClient(t *testing.T) {
	curl := needTool(t, "curl")
	ca := newOpenSSLCA(t)
	srvCrt, srvKey := ca.issue(t, "server", "/CN=server", "extendedKeyUsage=serverAuth", "subjectAltName=IP:127.0.0.1,DNS:localhost")
	goodCrt, goodKey := ca.issue(t, "good", "/CN=good", "extendedKeyUsage=clientAuth", "subjectAltName=URI:spiffe://td/ns/shop/sa/good")
	badCrt, badKey := ca.issue(t, "bad", "/CN=bad", "extendedKeyUsage=clientAuth", "subjectAltName=URI:spiffe://td/ns/shop/sa/bad")
	badSerial := ca.serial
	ca.revoke(t, badCrt)
	crl := filepath.Join(ca.dir, "crl.pem")
	ca.gencrl(t, crl)

	up := startUpstream(t, upperEcho)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ops := &opsServer{status: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	m := startMoat(t, "server", "--listen", addr, "--target", up.addr(), "--cert", srvCrt, "--key", srvKey,
		"--cacert", ca.crt, "--allow-uri", "spiffe://td/ns/shop/**", "--crl", crl, "--status", ops.status)

	curlAs := func(crt, key string) ([]byte, error) {
		return exec.Command(curl, "-sS", "--max-time", "10", "--cacert", ca.crt, "--cert", crt, "--key", key,
			"--data-binary", "ping", "https://"+addr+"/").CombinedOutput()
	}
	if out, _ := curlAs(goodCrt, goodKey); up.accepted.Load() != 1 {
		t.Fatalf("the unrevoked client did not reach the upstream: %s", out)
	}
	if out, err := curlAs(badCrt, badKey); err == nil {
		t.Fatalf("curl with the revoked certificate got through: %s", out)
	}
	m.waitFor(t, `"auth_refused":"revoked"`, step)

	cmd := exec.Command(ca.bin, "s_client", "-connect", addr, "-tls1_3", "-CAfile", ca.crt, "-cert", badCrt, "-key", badKey, "-ign_eof")
	cmd.Stdin = strings.NewReader("ping\n")
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "alert number 42") {
		t.Errorf("openssl s_client with the revoked certificate: want bad_certificate (alert number 42):\n%s", out)
	}
	if n := up.accepted.Load(); n != 1 {
		t.Errorf("the upstream saw %d connections, want only the unrevoked client's", n)
	}
	if n := m.count(`"auth_refused":"revoked"`); n < 2 {
		waitCount(t, m, `"auth_refused":"revoked"`, 2)
	}
	if !strings.Contains(m.output(), fmt.Sprintf(`certificate \"CN=bad\" (serial %x) is revoked by CRL %s`, badSerial, crl)) {
		t.Errorf("the refusal does not say which certificate and CRL:\n%s", m.output())
	}
	fams := ops.metrics(t)
	if got := value(fams, "moat_handshake_errors_total", map[string]string{"reason": "revoked"}); got != 2 {
		t.Errorf("moat_handshake_errors_total{reason=revoked} = %v, want 2", got)
	}
	next := value(fams, "moat_crl_next_update_timestamp_seconds", map[string]string{"file": crl})
	if next < float64(time.Now().Unix()) || next > float64(time.Now().Add(25*time.Hour).Unix()) {
		t.Errorf("moat_crl_next_update_timestamp_seconds = %v, want about a day from now", next)
	}
}

// waitCount waits until s appears n times in p's output.
func waitCount(t testing.TB, p *process, s string, n int) {
	t.Helper()
	waitCountWithin(t, p, s, n, step)
}

// mtlsClientConfig is a Go client presenting leaf, trusting roots, with a
// session cache so that reconnects resume.
func mtlsClientConfig(leaf *testpki.Leaf, roots *x509.CertPool, cache tls.ClientSessionCache) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{leaf.TLS()}, RootCAs: roots, ServerName: "localhost", ClientSessionCache: cache}
}

// roundTrip connects, sends a line through the upper-casing upstream and
// reads it back; it returns the connection state.
func roundTrip(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	c, err := tls.DialWithDialer(&netDialer, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(step))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return c.ConnectionState(), err
	}
	buf := make([]byte, 5)
	if _, err := ioReadFull(c, buf); err != nil {
		return c.ConnectionState(), err
	}
	if string(buf) != "PING\n" {
		return c.ConnectionState(), fmt.Errorf("read %q", buf)
	}
	return c.ConnectionState(), nil
}

// TestCRLReloadAndResumption: CRLs made with crypto/x509 in a Kubernetes
// style volume. A client that resumed its session before is refused on
// resumption once a swapped-in CRL revokes it (and the upstream sees no
// connection for it); a CRL that does not verify, found by the watcher or
// by SIGHUP, is a failed reload that keeps the old list and is counted;
// and an intermediate revoked by the root's CRL takes its leaves with it.
func TestCRLReloadAndResumption(t *testing.T) {
	root := testpki.NewCA()
	inter := root.Intermediate("moat e2e intermediate")
	stranger := testpki.NewNamedCA("stranger")
	srv, err := root.Issue("localhost", "127.0.0.1").WritePEM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	alice, bob, carol := root.IssueClient("alice"), root.IssueClient("bob"), inter.IssueClient("carol")
	vol := newKubeDir(t, map[string]string{"ca.crl": pemCRL(goCRL(t, root, time.Now().Add(time.Hour)))})

	up := startUpstream(t, upperEcho)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ops := &opsServer{status: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	m := startMoat(t, "server", "--listen", addr, "--target", up.addr(), "--cert", srv.Cert, "--key", srv.Key,
		"--cacert", srv.CA, "--allow-all", "--crl", vol.path("ca.crl"), "--status", ops.status, "--log-level", "debug")
	roots := root.Pool()
	aliceCache := tls.NewLRUClientSessionCache(4)
	aliceCfg := mtlsClientConfig(alice, roots, aliceCache)
	if _, err := roundTrip(addr, aliceCfg); err != nil {
		t.Fatalf("alice, first connection: %v", err)
	}
	cs, err := roundTrip(addr, aliceCfg)
	if err != nil || !cs.DidResume {
		t.Fatalf("alice, second connection: resumed %v, err %v; want a resumed session", cs.DidResume, err)
	}
	m.waitFor(t, `"resumed":true`, step)
	if _, err := roundTrip(addr, mtlsClientConfig(carol, roots, nil)); err != nil {
		t.Fatalf("carol (under the intermediate): %v", err)
	}

	// The kubelet swaps in a CRL revoking alice and the intermediate.
	vol.swap(t, map[string]string{"ca.crl": pemCRL(goCRL(t, root, time.Now().Add(time.Hour), alice.Cert.SerialNumber, inter.Cert.SerialNumber))})
	m.waitFor(t, "revocation lists reloaded", step)
	before := up.accepted.Load()
	if _, err := roundTrip(addr, aliceCfg); err == nil {
		t.Fatal("alice resumed her session after her certificate was revoked")
	}
	if _, err := roundTrip(addr, mtlsClientConfig(carol, roots, nil)); err == nil {
		t.Fatal("carol got through after her intermediate was revoked")
	}
	if _, err := roundTrip(addr, mtlsClientConfig(bob, roots, nil)); err != nil {
		t.Fatalf("bob, not revoked: %v", err)
	}
	if n := up.accepted.Load() - before; n != 1 {
		t.Fatalf("the upstream saw %d connections after the revocation, want bob's alone", n)
	}
	waitCount(t, m, `"auth_refused":"revoked"`, 2)

	// A CRL signed by a stranger: the watcher's reload fails, and so does
	// SIGHUP's; alice stays revoked, bob admitted.
	vol.swap(t, map[string]string{"ca.crl": pemCRL(goCRL(t, stranger, time.Now().Add(time.Hour)))})
	m.waitFor(t, "CRL reload failed; the previous revocation lists stay in service", step)
	if err := m.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitCount(t, m, "CRL reload failed; the previous revocation lists stay in service", 2)
	if !strings.Contains(m.output(), "not a CA in the CA bundle") {
		t.Errorf("the failed reload does not say why")
	}
	if _, err := roundTrip(addr, aliceCfg); err == nil {
		t.Fatal("alice got through after a failed CRL reload")
	}
	if _, err := roundTrip(addr, mtlsClientConfig(bob, roots, nil)); err != nil {
		t.Fatalf("bob after a failed CRL reload: %v", err)
	}
	if got := value(ops.metrics(t), "moat_reloads_total", map[string]string{"result": "failure"}); got != 2 {
		t.Errorf("moat_reloads_total{result=failure} = %v, want 2", got)
	}
}

// TestExpiredCRL: a CRL past its nextUpdate is warned about at start and
// still applied under the default --crl-expired=warn; under refuse, every
// certificate of its issuer is refused as crl-expired.
func TestExpiredCRL(t *testing.T) {
	root := testpki.NewCA()
	srv, err := root.Issue("localhost", "127.0.0.1").WritePEM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	alice := root.IssueClient("alice")
	crl := filepath.Join(t.TempDir(), "old.crl")
	write(t, crl, string(goCRL(t, root, time.Now().Add(-time.Minute), big.NewInt(424242)))) // DER
	up := startUpstream(t, upperEcho)
	for _, tc := range []struct {
		mode    string
		admits  bool
		refusal string
	}{{"warn", true, ""}, {"refuse", false, `"auth_refused":"crl-expired"`}} {
		t.Run(tc.mode, func(t *testing.T) {
			addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			m := startMoat(t, "server", "--listen", addr, "--target", up.addr(), "--cert", srv.Cert, "--key", srv.Key,
				"--cacert", srv.CA, "--allow-all", "--crl", crl, "--crl-expired", tc.mode)
			m.waitFor(t, "CRL is past its nextUpdate", step)
			_, err := roundTrip(addr, mtlsClientConfig(alice, root.Pool(), nil))
			if (err == nil) != tc.admits {
				t.Fatalf("--crl-expired=%s: admitted %v (%v), want %v", tc.mode, err == nil, err, tc.admits)
			}
			if tc.refusal != "" {
				m.waitFor(t, tc.refusal, step)
			}
		})
	}
}
