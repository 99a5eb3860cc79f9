package certs

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mtlsFixture is a server Source trusting ca, and client certificates
// issued by it and by a stranger.
type mtlsFixture struct {
	ca, other *testCA
	src       *Source
	caFile    string
}

func newMTLSFixture(t *testing.T) *mtlsFixture {
	t.Helper()
	f := &mtlsFixture{ca: newTestCA(t, "client CA"), other: newTestCA(t, "other CA")}
	dir := t.TempDir()
	certFile, keyFile := writeKeyPair(t, dir, "server", f.ca.issue(t, serverTemplate()))
	f.caFile = filepath.Join(dir, "ca.crt")
	writeTestFile(t, f.caFile, certPEM(f.ca.cert))
	var err error
	if f.src, err = NewFileSource(certFile, keyFile, f.caFile); err != nil {
		t.Fatal(err)
	}
	return f
}

// client makes a client certificate template; edit tweaks it.
func clientTemplate(edit func(*x509.Certificate)) *x509.Certificate {
	tmpl := leafTemplate("web", x509.ExtKeyUsageClientAuth)
	tmpl.Subject = pkix.Name{CommonName: "web", OrganizationalUnit: []string{"payments"}}
	tmpl.DNSNames = []string{"web.default.svc"}
	u, _ := url.Parse("spiffe://trust.domain/ns/x/sa/y")
	tmpl.URIs = []*url.URL{u}
	if edit != nil {
		edit(tmpl)
	}
	return tmpl
}

var policyCases = []struct {
	name   string
	policy Policy
}{
	{"CN", Policy{CNs: []string{"web"}}},
	{"OU", Policy{OUs: []string{"billing", "payments"}}},
	{"DNS SAN", Policy{DNSNames: []string{"web.default.svc"}}},
	{"SPIFFE URI", Policy{URIs: []string{"spiffe://trust.domain/ns/x/sa/y"}}},
	{"allow all", Policy{AllowAll: true}},
}

func TestVerifierAllowsEachKindOfRule(t *testing.T) {
	f := newMTLSFixture(t)
	leaf := f.ca.issue(t, clientTemplate(nil)).Leaf
	for _, tc := range policyCases {
		t.Run(tc.name, func(t *testing.T) {
			err := f.src.ServerVerifier(tc.policy)(tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// refusal is a client that must be turned away, and why.
type refusal struct {
	name   string
	cert   func(f *mtlsFixture, t *testing.T) *tls.Certificate // nil: no certificate
	reason Reason
	alert  tls.AlertError // what a TLS 1.3 client is sent
}

var refusals = []refusal{
	{"disallowed identity", func(f *mtlsFixture, t *testing.T) *tls.Certificate {
		return f.ca.issue(t, clientTemplate(func(c *x509.Certificate) {
			c.Subject = pkix.Name{CommonName: "intruder", OrganizationalUnit: []string{"ops"}}
			c.DNSNames = []string{"intruder.default.svc"}
			u, _ := url.Parse("spiffe://trust.domain/ns/x/sa/intruder")
			c.URIs = []*url.URL{u}
		}))
	}, ReasonNotAllowed, 42},
	{"other CA", func(f *mtlsFixture, t *testing.T) *tls.Certificate {
		return f.other.issue(t, clientTemplate(nil))
	}, ReasonUnknownCA, 48},
	{"expired", func(f *mtlsFixture, t *testing.T) *tls.Certificate {
		return f.ca.issue(t, clientTemplate(func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)
		}))
	}, ReasonExpired, 45},
	{"server-only key usage", func(f *mtlsFixture, t *testing.T) *tls.Certificate {
		return f.ca.issue(t, clientTemplate(func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}))
	}, ReasonBadCert, 42},
	{"no certificate", nil, ReasonNoCert, 116},
}

var webPolicy = Policy{URIs: []string{"spiffe://trust.domain/ns/x/sa/y"}, CNs: []string{"web"}}

func TestVerifierRefusesWithReason(t *testing.T) {
	f := newMTLSFixture(t)
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			var chain []*x509.Certificate
			if tc.cert != nil {
				chain = append(chain, tc.cert(f, t).Leaf)
			}
			err := f.src.ServerVerifier(webPolicy)(tls.ConnectionState{PeerCertificates: chain})
			var ae *AuthError
			if !errors.As(err, &ae) || ae.Reason != tc.reason {
				t.Fatalf("error %v, want reason %s", err, tc.reason)
			}
			var alert tls.AlertError
			if !errors.As(err, &alert) || alert != tc.alert {
				t.Fatalf("alert %v, want %v", alert, tc.alert)
			}
			if tc.cert != nil && !strings.Contains(ae.Identity, "CN=") {
				t.Fatalf("identity %q does not name the client", ae.Identity)
			}
		})
	}
}

func (f *mtlsFixture) clientConfig(cert *tls.Certificate, version uint16) *tls.Config {
	cfg := &tls.Config{RootCAs: f.ca.pool(), ServerName: "localhost", MinVersion: version, MaxVersion: version}
	if cert != nil {
		// Present the certificate even when the server's list of acceptable
		// CAs does not name its issuer, as a non-Go client may: a Go client
		// would otherwise send none, and the unknown-CA path would go untested.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	return cfg
}

func TestHandshakeRefusalsSendTheIntendedAlert(t *testing.T) {
	f := newMTLSFixture(t)
	server := f.src.ServerTLSConfig(webPolicy, true)
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		for _, tc := range refusals {
			t.Run(tls.VersionName(version)+"/"+tc.name, func(t *testing.T) {
				var cert *tls.Certificate
				if tc.cert != nil {
					cert = tc.cert(f, t)
				}
				serverErr, clientErr := handshake(t, server, f.clientConfig(cert, version))
				ae, ok := AsAuthError(serverErr)
				if !ok || ae.Reason != tc.reason {
					t.Fatalf("server error %v, want reason %s", serverErr, tc.reason)
				}
				want := tc.alert
				if tc.reason == ReasonNoCert && version == tls.VersionTLS12 {
					want = 40 // handshake_failure: TLS 1.2 has no certificate_required
				}
				if got, ok := remoteAlert(clientErr); !ok || got != want {
					t.Fatalf("client error %v, want alert %v", clientErr, want)
				}
			})
		}
	}
}

func TestHandshakeAcceptsAllowedClients(t *testing.T) {
	f := newMTLSFixture(t)
	cert := f.ca.issue(t, clientTemplate(nil))
	for _, tc := range policyCases {
		t.Run(tc.name, func(t *testing.T) {
			serverErr, clientErr := handshake(t, f.src.ServerTLSConfig(tc.policy, true), f.clientConfig(cert, tls.VersionTLS13))
			if serverErr != nil || clientErr != nil {
				t.Fatalf("server %v, client %v", serverErr, clientErr)
			}
		})
	}
}

func TestServerVerifierAloneSendsBadCertificate(t *testing.T) {
	// With RequireAnyClientCert and only ServerVerifier, crypto/tls sends
	// bad_certificate for every error VerifyConnection returns; this pins
	// down the behaviour ServerTLSConfig's design works around.
	f := newMTLSFixture(t)
	server := &tls.Config{
		GetCertificate:   f.src.GetCertificate,
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: f.src.ServerVerifier(webPolicy),
	}
	serverErr, clientErr := handshake(t, server, f.clientConfig(f.other.issue(t, clientTemplate(nil)), tls.VersionTLS13))
	if ae, ok := AsAuthError(serverErr); !ok || ae.Reason != ReasonUnknownCA {
		t.Fatalf("server error %v", serverErr)
	}
	if got, _ := remoteAlert(clientErr); got != 42 {
		t.Fatalf("client error %v, want bad_certificate", clientErr)
	}
}

func TestCARotationAppliesToNewHandshakes(t *testing.T) {
	f := newMTLSFixture(t)
	server := f.src.ServerTLSConfig(webPolicy, true)
	oldClient := f.ca.issue(t, clientTemplate(nil))
	newClient := f.other.issue(t, clientTemplate(nil))
	if s, c := handshake(t, server, f.clientConfig(oldClient, tls.VersionTLS13)); s != nil || c != nil {
		t.Fatalf("before rotation: server %v, client %v", s, c)
	}
	writeTestFile(t, f.caFile, certPEM(f.other.cert))
	if err := f.src.Reload(); err != nil {
		t.Fatal(err)
	}
	if s, _ := handshake(t, server, f.clientConfig(oldClient, tls.VersionTLS13)); s == nil {
		t.Fatal("client of the retired CA still accepted")
	}
	if s, c := handshake(t, server, f.clientConfig(newClient, tls.VersionTLS13)); s != nil || c != nil {
		t.Fatalf("client of the new CA: server %v, client %v", s, c)
	}
}

func TestDisabledAuthenticationAsksForNoCertificate(t *testing.T) {
	f := newMTLSFixture(t)
	cfg := f.src.ServerTLSConfig(Policy{}, false)
	if cfg.ClientAuth != tls.NoClientCert || cfg.MinVersion != tls.VersionTLS12 {
		t.Fatalf("ClientAuth %v MinVersion %x", cfg.ClientAuth, cfg.MinVersion)
	}
	if s, c := handshake(t, cfg, f.clientConfig(nil, tls.VersionTLS13)); s != nil || c != nil {
		t.Fatalf("server %v, client %v", s, c)
	}
}

func TestIdentityIsBoundedForLargeCertificates(t *testing.T) {
	f := newMTLSFixture(t)
	leaf := f.ca.issue(t, clientTemplate(func(c *x509.Certificate) {
		for i := range 100 {
			c.DNSNames = append(c.DNSNames, strings.Repeat("a", i+1)+".example")
		}
	})).Leaf
	id := Identity(leaf)
	if !strings.HasPrefix(id, "CN=web, OU=payments, URI=spiffe://trust.domain/ns/x/sa/y, DNS=") || !strings.HasSuffix(id, "+98 more") {
		t.Fatalf("identity %q", id)
	}
}
