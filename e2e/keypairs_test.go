package e2e

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// servedCN asks moat at addr for its certificate with openssl s_client,
// sending sni as the server name ("" sends none), and returns the
// certificate's subject CN.
func servedCN(t testing.TB, addr, sni string) string {
	t.Helper()
	openssl := needTool(t, "openssl")
	args := []string{"s_client", "-connect", addr}
	if sni == "" {
		args = append(args, "-noservername")
	} else {
		args = append(args, "-servername", sni)
	}
	cmd := exec.Command(openssl, args...)
	cmd.Stdin = strings.NewReader("")
	out, _ := cmd.CombinedOutput()
	m := regexp.MustCompile(`(?m)^subject=.*CN ?= ?([^,\n]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("s_client -servername %q: no subject in its output:\n%s", sni, out)
	}
	return strings.TrimSpace(string(m[1]))
}

// replacePair writes a new certificate and key for name over certFile and
// keyFile, each by rename, as a deployment tool would.
func replacePair(t testing.TB, ca *pki, name, certFile, keyFile string, edit func(*x509.Certificate)) {
	t.Helper()
	c, k := ca.issue(t, name, edit)
	for _, mv := range [][2]string{{k, keyFile}, {c, certFile}} {
		if err := os.Rename(mv[0], mv[1]); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSeveralCertificatesBySNI: two --cert/--key pairs on one listener;
// openssl s_client -servername gets the pair covering the name (the
// second by its wildcard), and no SNI or an unknown name gets the first;
// replacing the second pair's files puts the new certificate into service
// for its names, and the first pair's stays.
func TestSeveralCertificatesBySNI(t *testing.T) {
	ca := newPKI(t, "sni CA")
	alphaCert, alphaKey := ca.issue(t, "alpha", func(c *x509.Certificate) { c.DNSNames = []string{"alpha.test"} })
	wild := func(c *x509.Certificate) { c.DNSNames = []string{"*.beta.test"} }
	betaDir := t.TempDir()
	bc, bk := ca.issue(t, "beta", wild)
	betaCert, betaKey := filepath.Join(betaDir, "beta.crt"), filepath.Join(betaDir, "beta.key")
	os.Rename(bc, betaCert)
	os.Rename(bk, betaKey)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	m := startMoat(t, "server", "--listen", addr, "--target", "127.0.0.1:9", "--disable-authentication",
		"--cert", alphaCert, "--key", alphaKey, "--cert", betaCert, "--key", betaKey)

	for _, tc := range []struct{ sni, want string }{
		{"alpha.test", "alpha"},
		{"www.beta.test", "beta"},
		{"api.beta.test", "beta"},
		{"", "alpha"},
		{"unknown.test", "alpha"},
		{"x.y.beta.test", "alpha"}, // a wildcard covers one label
	} {
		if got := servedCN(t, addr, tc.sni); got != tc.want {
			t.Errorf("-servername %q: served CN %q, want %q", tc.sni, got, tc.want)
		}
	}

	replacePair(t, ca, "beta-renewed", betaCert, betaKey, wild)
	deadline := time.Now().Add(15 * time.Second)
	for servedCN(t, addr, "www.beta.test") != "beta-renewed" {
		if time.Now().After(deadline) {
			t.Fatal("the second pair's new certificate was not served within 15s of the file change")
		}
		time.Sleep(100 * time.Millisecond)
	}
	m.waitFor(t, "certificate reloaded", 5*time.Second)
	if got := servedCN(t, addr, "alpha.test"); got != "alpha" {
		t.Errorf("after the second pair's reload, alpha.test got %q", got)
	}
}

// TestSeveralCertDirsBySNI: two Secret mounts; the second's certificate is
// served for its name, the first's for the rest.
func TestSeveralCertDirsBySNI(t *testing.T) {
	ca := newPKI(t, "sni CA")
	mount := func(name, host string) string {
		dir := t.TempDir()
		c, k := ca.issue(t, name, func(c *x509.Certificate) { c.DNSNames = []string{host} })
		os.Rename(c, filepath.Join(dir, "tls.crt"))
		os.Rename(k, filepath.Join(dir, "tls.key"))
		return dir
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startMoat(t, "server", "--listen", addr, "--target", "127.0.0.1:9", "--disable-authentication",
		"--cert-dir", mount("one", "one.test"), "--cert-dir", mount("two", "two.test"))
	for sni, want := range map[string]string{"one.test": "one", "two.test": "two", "": "one"} {
		if got := servedCN(t, addr, sni); got != want {
			t.Errorf("-servername %q: served CN %q, want %q", sni, got, want)
		}
	}
}

// TestCertKeyCountMismatchRefused: three --cert and two --key stop moat at
// start with one line naming --key.
func TestCertKeyCountMismatchRefused(t *testing.T) {
	ca := newPKI(t, "sni CA")
	c, k := ca.serverCert(t)
	out, err := exec.Command(moatBin, "server", "--log-format", "console", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:9", "--disable-authentication",
		"--cert", c, "--key", k, "--cert", c, "--key", k, "--cert", c).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("%v, want exit code 2", err)
	}
	want := "moat: --key: 3 --cert and 2 --key given: give them in pairs, each --cert followed by its --key"
	if got := strings.TrimSpace(string(out)); got != want {
		t.Fatalf("output %q, want %q", got, want)
	}
}
