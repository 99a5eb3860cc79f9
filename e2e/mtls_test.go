package e2e

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-proxy/moat/internal/testpki"
)

// pki is a tiny CA for client certificates with the fields the allow
// flags look at (CN, OU, DNS and URI SANs) and any validity period, with
// its certificate and the ones it issues written as PEM files.
type pki struct {
	dir  string
	ca   *testpki.CA
	cert *x509.Certificate
	file string // the CA certificate, PEM
}

func newPKI(t testing.TB, name string) *pki {
	t.Helper()
	ca := testpki.NewNamedCA(name)
	p := &pki{dir: t.TempDir(), ca: ca, cert: ca.Cert}
	p.file = filepath.Join(p.dir, "ca.crt")
	writePEM(t, p.file, "CERTIFICATE", ca.Cert.Raw)
	return p
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue writes a certificate, for client and server use, and its key named
// name and returns their paths.
func (p *pki) issue(t testing.TB, name string, edit func(*x509.Certificate)) (certFile, keyFile string) {
	t.Helper()
	leaf := p.ca.IssueClientWith(name, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
		if edit != nil {
			edit(c)
		}
	})
	certFile, keyFile = filepath.Join(p.dir, name+".crt"), filepath.Join(p.dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", leaf.Cert.Raw)
	kder, err := x509.MarshalPKCS8PrivateKey(leaf.Key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, keyFile, "PRIVATE KEY", kder)
	return certFile, keyFile
}

func (p *pki) serverCert(t testing.TB) (string, string) {
	return p.issue(t, "server", func(c *x509.Certificate) {
		c.DNSNames = []string{"localhost"}
		c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	})
}

// TestMutualTLSAllowRulesWithCurl: curl with a certificate matching each
// allow flag reaches the upstream; a disallowed, foreign, expired or
// missing certificate is refused during the handshake and the upstream
// never sees a connection for it.
func TestMutualTLSAllowRulesWithCurl(t *testing.T) {
	curl := needTool(t, "curl")
	ca, other := newPKI(t, "moat e2e CA"), newPKI(t, "another CA")
	srvCert, srvKey := ca.serverCert(t)
	spiffe, _ := url.Parse("spiffe://trust.example/ns/shop/sa/web")
	var clients []mtlsClient
	add := func(name string, allowed bool, reason string, p *pki, edit func(*x509.Certificate)) {
		c, k := p.issue(t, name, edit)
		clients = append(clients, mtlsClient{name, c, k, allowed, reason})
	}
	add("by-cn", true, "", ca, nil)
	add("by-ou", true, "", ca, func(c *x509.Certificate) { c.Subject.OrganizationalUnit = []string{"payments"} })
	add("by-dns", true, "", ca, func(c *x509.Certificate) { c.DNSNames = []string{"web.shop.svc"} })
	add("by-uri", true, "", ca, func(c *x509.Certificate) { c.URIs = []*url.URL{spiffe} })
	bankAPI, _ := url.Parse("spiffe://trust.example/ns/bank/sa/api")
	tooDeep, _ := url.Parse("spiffe://trust.example/ns/bank/sa/api/extra")
	add("by-uri-wildcard", true, "", ca, func(c *x509.Certificate) { c.URIs = []*url.URL{bankAPI} })
	add("by-uri-wildcard-too-deep", false, "not-allowed", ca, func(c *x509.Certificate) { c.URIs = []*url.URL{tooDeep} })
	add("stranger", false, "not-allowed", ca, nil)
	add("by-cn-foreign", false, "unknown-ca", other, func(c *x509.Certificate) { c.Subject.CommonName = "by-cn" })
	add("by-cn-expired", false, "expired", ca, func(c *x509.Certificate) {
		c.Subject.CommonName = "by-cn"
		c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
	})

	up := startUpstream(t, upperEcho)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ops := &opsServer{status: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	m := startMoat(t, "server", "--listen", addr, "--target", up.addr(), "--cert", srvCert, "--key", srvKey,
		"--cacert", ca.file, "--allow-cn", "by-cn", "--allow-ou", "payments", "--allow-dns", "web.shop.svc",
		"--allow-uri", spiffe.String(), "--allow-uri", "spiffe://trust.example/ns/bank/sa/*", "--status", ops.status)
	refused := map[string]float64{}

	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			before := up.accepted.Load()
			cmd := exec.Command(curl, "-sS", "--max-time", "10", "--cacert", ca.file, "--cert", c.cert, "--key", c.key,
				"--data-binary", "ping from "+c.name, "https://"+addr+"/")
			out, err := cmd.CombinedOutput()
			reached := up.accepted.Load() - before
			if c.allowed {
				// The upstream is not HTTP: it answers the request upper-cased,
				// which curl reports as a bad reply. What matters is that the
				// bytes reached it and came back.
				if reached != 1 {
					t.Fatalf("allowed client: upstream saw %d connections; curl: %v %s", reached, err, out)
				}
				return
			}
			if err == nil {
				t.Fatalf("refused client got through: %s", out)
			}
			if reached != 0 {
				t.Fatalf("upstream saw %d connections for a refused client", reached)
			}
			m.waitFor(t, `"auth_refused":"`+c.refusedFor+`"`, 5*time.Second)
			refused[c.refusedFor]++
		})
	}
	t.Run("no-certificate", func(t *testing.T) {
		before := up.accepted.Load()
		out, err := exec.Command(curl, "-sS", "--max-time", "10", "--cacert", ca.file, "https://"+addr+"/").CombinedOutput()
		if err == nil {
			t.Fatalf("client without a certificate got through: %s", out)
		}
		if up.accepted.Load() != before {
			t.Fatal("upstream saw a connection for a client without a certificate")
		}
		m.waitFor(t, `"auth_refused":"no-cert"`, 5*time.Second)
		refused["no-cert"]++
	})

	// The alert each refusal sends, as OpenSSL reports it, over TLS 1.3.
	if openssl, err := exec.LookPath("openssl"); err == nil {
		for _, tc := range []struct {
			name   string
			args   []string
			alert  string
			reason string
		}{
			{"no certificate", nil, "alert number 116", "no-cert"}, // certificate_required
			{"other CA", certArgs(clients, "by-cn-foreign"), "alert number 48", "unknown-ca"},
			{"expired", certArgs(clients, "by-cn-expired"), "alert number 45", "expired"},
			{"not allowed", certArgs(clients, "stranger"), "alert number 42", "not-allowed"}, // bad_certificate
		} {
			before := up.accepted.Load()
			args := append([]string{"s_client", "-connect", addr, "-tls1_3", "-CAfile", ca.file, "-ign_eof"}, tc.args...)
			cmd := exec.Command(openssl, args...)
			cmd.Stdin = strings.NewReader("ping\n")
			out, _ := cmd.CombinedOutput()
			if !strings.Contains(string(out), tc.alert) {
				t.Errorf("openssl s_client, %s: want %q in its output:\n%s", tc.name, tc.alert, out)
			}
			if up.accepted.Load() != before {
				t.Errorf("openssl s_client, %s: the upstream saw a connection", tc.name)
			}
			refused[tc.reason]++
		}
	}

	// Every refusal is counted under its reason.
	fams := ops.metrics(t)
	for reason, want := range refused {
		if got := value(fams, "moat_handshake_errors_total", map[string]string{"reason": reason}); got != want {
			t.Errorf("moat_handshake_errors_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}

// TestInvalidSPIFFEIDRefusedWithCurl: under --allow-uri spiffe://td/**, a
// client certificate from the trusted CA whose URI SAN is the invalid SPIFFE
// ID spiffe://td/ns/../sa/x is refused during the handshake as bad-cert (the
// certificate is malformed; no rule was consulted), and counted so; a
// certificate with a valid ID reaches the upstream.
func TestInvalidSPIFFEIDRefusedWithCurl(t *testing.T) {
	curl := needTool(t, "curl")
	ca := newPKI(t, "moat e2e CA")
	srvCert, srvKey := ca.serverCert(t)
	withURI := func(name, uri string) (string, string) {
		u, err := url.Parse(uri)
		if err != nil {
			t.Fatal(err)
		}
		return ca.issue(t, name, func(c *x509.Certificate) { c.URIs = []*url.URL{u} })
	}
	up := startUpstream(t, upperEcho)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ops := &opsServer{status: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	m := startMoat(t, "server", "--listen", addr, "--target", up.addr(), "--cert", srvCert, "--key", srvKey,
		"--cacert", ca.file, "--allow-uri", "spiffe://td/**", "--status", ops.status)
	request := func(cert, key string) error {
		return exec.Command(curl, "-sS", "--max-time", "10", "--cacert", ca.file, "--cert", cert, "--key", key,
			"--data-binary", "ping", "https://"+addr+"/").Run()
	}

	cert, key := withURI("dot-dot", "spiffe://td/ns/../sa/x")
	if err := request(cert, key); err == nil {
		t.Fatal("a client whose SPIFFE ID has a .. segment got through")
	}
	if n := up.accepted.Load(); n != 0 {
		t.Fatalf("the upstream saw %d connections for the refused client", n)
	}
	m.waitFor(t, `"auth_refused":"bad-cert"`, 5*time.Second)
	if !strings.Contains(m.output(), "not a valid SPIFFE ID") {
		t.Errorf("the refusal's log line does not say why:\n%s", m.output())
	}

	cert, key = withURI("valid", "spiffe://td/ns/shop/sa/x")
	request(cert, key) // the upstream answers upper-cased, not HTTP: curl fails after the bytes went through
	if n := up.accepted.Load(); n != 1 {
		t.Fatalf("a client with a valid SPIFFE ID under spiffe://td/**: the upstream saw %d connections, want 1", n)
	}
	fams := ops.metrics(t)
	if got := value(fams, "moat_handshake_errors_total", map[string]string{"reason": "bad-cert"}); got != 1 {
		t.Errorf(`moat_handshake_errors_total{reason="bad-cert"} = %v, want 1`, got)
	}
}

// mtlsClient is a client certificate of TestMutualTLSAllowRulesWithCurl.
type mtlsClient struct {
	name       string
	cert, key  string
	allowed    bool
	refusedFor string // the reason in moat's log
}

// certArgs is the -cert/-key arguments of the named test client.
func certArgs(clients []mtlsClient, name string) []string {
	for _, c := range clients {
		if c.name == name {
			return []string{"-cert", c.cert, "-key", c.key}
		}
	}
	panic("no test client " + name)
}

// TestCertsGenerateWorksWithMutualTLSFlags: the files `moat certs generate`
// writes run an mTLS server and a client that it admits.
func TestCertsGenerateWorksWithMutualTLSFlags(t *testing.T) {
	curl := needTool(t, "curl")
	dir := filepath.Join(t.TempDir(), "pki")
	if out, err := exec.Command(moatBin, "certs", "generate", "--dir", dir, "--hosts", "localhost,127.0.0.1").CombinedOutput(); err != nil {
		t.Fatalf("certs generate: %v: %s", err, out)
	}
	up := startUpstream(t, upperEcho)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startMoat(t, "server", "--listen", addr, "--target", up.addr(),
		"--cert", filepath.Join(dir, "server.crt"), "--key", filepath.Join(dir, "server.key"),
		"--cacert", filepath.Join(dir, "ca.crt"), "--allow-cn", "moat-client")
	exec.Command(curl, "-sS", "--max-time", "10", "--cacert", filepath.Join(dir, "ca.crt"),
		"--cert", filepath.Join(dir, "client.crt"), "--key", filepath.Join(dir, "client.key"),
		"--data-binary", "hi", "https://"+addr+"/").Run()
	if up.accepted.Load() != 1 {
		t.Fatalf("the generated client certificate did not reach the upstream (%d connections)", up.accepted.Load())
	}
	if err := exec.Command(curl, "-sS", "--max-time", "10", "--cacert", filepath.Join(dir, "ca.crt"), "https://"+addr+"/").Run(); err == nil {
		t.Fatal("a client without the generated certificate got through")
	}
}
