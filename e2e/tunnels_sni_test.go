package e2e

import (
	"crypto/x509"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// sniRig is one listen address shared by three server services routed by
// SNI, each with its own CA, certificate, client authentication and
// counting upstream.
type sniRig struct {
	r               *tunnelRig
	addr            string
	apiCA, webCA    *pki
	clientCert      string
	clientKey       string
	api, web, other *tcpUpstream
}

func newSNIRig(t *testing.T, withDefault bool) *sniRig {
	s := &sniRig{r: newTunnelRig(t), addr: addr127(t), apiCA: newPKI(t, "api CA"), webCA: newPKI(t, "web CA")}
	s.api, s.web, s.other = startUpstream(t, upperEcho), startUpstream(t, upperEcho), startUpstream(t, upperEcho)
	apiCert, apiKey := s.apiCA.issue(t, "api-server", func(c *x509.Certificate) { c.DNSNames = []string{"api.example.com"} })
	webCert, webKey := s.webCA.issue(t, "web-server", func(c *x509.Certificate) { c.DNSNames = []string{"*.example.org"} })
	s.clientCert, s.clientKey = s.apiCA.issue(t, "robot", nil)
	// api requires a client certificate from its CA with CN robot; web
	// takes anyone.
	api := fmt.Sprintf("  - name: api\n    mode: server\n    listen: %s\n    target: %s\n    cert: %s\n    key: %s\n    cacert: %s\n    allow-cn: [robot]\n    sni: [api.example.com]\n",
		s.addr, s.api.addr(), apiCert, apiKey, s.apiCA.file)
	web := fmt.Sprintf("  - name: web\n    mode: server\n    listen: %s\n    target: %s\n    cert: %s\n    key: %s\n    disable-authentication: true\n    sni: [\"*.example.org\", www.example.net]\n",
		s.addr, s.web.addr(), webCert, webKey)
	other := s.r.service("other", s.addr, s.other.addr(), "sni: localhost")
	if withDefault {
		other += "    default: true\n"
	}
	s.r.write(api, web, other)
	s.r.start()
	return s
}

// sClientSNI sends one line with openssl s_client asking for name and
// returns its output.
func (s *sniRig) sClientSNI(t *testing.T, name, ca string, args ...string) string {
	openssl := needTool(t, "openssl")
	all := append([]string{"s_client", "-connect", s.addr, "-servername", name, "-CAfile", ca, "-verify_return_error", "-ign_eof"}, args...)
	p := start(t, openssl, all...)
	line := "ping " + name
	fmt.Fprintln(p.stdin, line)
	deadline := time.After(10 * time.Second)
	for !strings.Contains(p.output(), strings.ToUpper(line)) {
		select {
		case <-p.done:
			return p.output()
		case <-deadline:
			return p.output()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return p.output()
}

func TestRunRoutesBySNIWithEachServicesOwnSettings(t *testing.T) {
	s := newSNIRig(t, false)
	t.Run("api with its client certificate", func(t *testing.T) {
		out := s.sClientSNI(t, "api.example.com", s.apiCA.file, "-cert", s.clientCert, "-key", s.clientKey)
		if !strings.Contains(out, "PING API.EXAMPLE.COM") || !strings.Contains(out, "Verify return code: 0") {
			t.Fatalf("api: %s", out)
		}
	})
	t.Run("api without a client certificate", func(t *testing.T) {
		before := s.api.accepted.Load()
		out := s.sClientSNI(t, "api.example.com", s.apiCA.file, "-tls1_3")
		if !strings.Contains(out, "alert number 116") { // certificate_required
			t.Fatalf("api without a certificate: %s", out)
		}
		if s.api.accepted.Load() != before {
			t.Error("api's upstream saw the refused client")
		}
		s.r.m.waitFor(t, `"service":"api","client"`, 5*time.Second)
		s.r.m.waitFor(t, `"auth_refused":"no-cert"`, 5*time.Second)
		if !regexp.MustCompile(`"service":"api"[^\n]*"auth_refused":"no-cert"`).MatchString(s.r.m.output()) {
			t.Error("the refusal by api's client authentication is not logged as api's")
		}
	})
	t.Run("web by wildcard", func(t *testing.T) {
		out := s.sClientSNI(t, "shop.example.org", s.webCA.file)
		if !strings.Contains(out, "PING SHOP.EXAMPLE.ORG") || !strings.Contains(out, "Verify return code: 0") {
			t.Fatalf("web: %s", out)
		}
	})
	t.Run("unknown name", func(t *testing.T) {
		out := s.sClientSNI(t, "nobody.example.com", s.webCA.file)
		if !strings.Contains(out, "unrecognized name") && !strings.Contains(out, "alert number 112") {
			t.Fatalf("an unknown name: %s", out)
		}
		s.r.m.waitFor(t, `"service":"sni:`+s.addr+`"`, 5*time.Second)
		s.r.m.waitFor(t, `no service for the server name \"nobody.example.com\"`, 5*time.Second)
	})
	if s.api.accepted.Load() != 1 || s.web.accepted.Load() != 1 || s.other.accepted.Load() != 0 {
		t.Errorf("upstreams saw api %d, web %d, other %d connections; want 1, 1, 0",
			s.api.accepted.Load(), s.web.accepted.Load(), s.other.accepted.Load())
	}
	s.r.m.waitFor(t, `"service":"api","client"`, 5*time.Second)
	s.r.m.waitFor(t, `"service":"web","client"`, 5*time.Second)
	fams := s.r.ops().metrics(t)
	// api's two connections: the one relayed and the one its client
	// authentication refused.
	for svc, want := range map[string]float64{"api": 2, "web": 1, "other": 0} {
		if v := value(fams, "moat_connections_total", map[string]string{"service": svc}); v != want {
			t.Errorf("moat_connections_total{service=%q} = %v, want %v", svc, v, want)
		}
	}
	if v := value(fams, "moat_handshakes_total", map[string]string{"service": "api", "result": "error"}); v != 1 {
		t.Errorf(`moat_handshakes_total{service="api",result="error"} = %v, want 1`, v)
	}
	if v := value(fams, "moat_handshake_errors_total", map[string]string{"service": "sni:" + s.addr, "reason": "unknown-sni"}); v != 1 {
		t.Errorf(`moat_handshake_errors_total{service="sni:%s",reason="unknown-sni"} = %v, want 1`, s.addr, v)
	}
}

func TestRunSNIDefaultTakesUnknownNames(t *testing.T) {
	s := newSNIRig(t, true)
	out := s.sClientSNI(t, "nobody.example.com", s.r.files.CA)
	if !strings.Contains(out, "PING NOBODY.EXAMPLE.COM") {
		t.Fatalf("an unknown name with a default service: %s", out)
	}
	if s.other.accepted.Load() != 1 {
		t.Errorf("the default service's upstream saw %d connections, want 1", s.other.accepted.Load())
	}
}

func TestRunSNIRefusesAmbiguousRoutes(t *testing.T) {
	r := newTunnelRig(t)
	addr := addr127(t)
	r.write(r.service("a", addr, "127.0.0.1:9", "sni: a.test", "default: true"),
		r.service("b", addr, "127.0.0.1:9", "sni: [b.test, A.test]", "default: true"))
	out, err := exec.Command(moatBin, "run", "--config", r.path, "--dry-run").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "moat.yaml:") || !(strings.Contains(string(out), "default:") || strings.Contains(string(out), "sni:")) {
		t.Fatalf("two defaults and a name routed twice: %v: %s", err, out)
	}
}
