package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"testing"
	"time"
)

// withFIPSMode runs the rest of the test as if Go's FIPS 140-3 mode were on.
func withFIPSMode(t *testing.T) {
	t.Cleanup(func() { fipsMode = func() bool { return false } })
	fipsMode = func() bool { return true }
}

func mustKey(t *testing.T, gen func() (crypto.Signer, error)) crypto.Signer {
	t.Helper()
	k, err := gen()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// issueFor signs tmpl with ca for the public key of key.
func (ca *testCA) issueFor(t *testing.T, tmpl *x509.Certificate, key crypto.Signer) *x509.Certificate {
	t.Helper()
	c, err := sign(tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFIPSKeyRule(t *testing.T) {
	ca := newTestCA(t, "fips rule CA")
	ec := func(c elliptic.Curve) func() (crypto.Signer, error) {
		return func() (crypto.Signer, error) { return ecdsa.GenerateKey(c, rand.Reader) }
	}
	rsaKey := func(bits int) func() (crypto.Signer, error) {
		return func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, bits) }
	}
	edKey := func() (crypto.Signer, error) { _, k, err := ed25519.GenerateKey(rand.Reader); return k, err }
	for _, tc := range []struct {
		name string
		gen  func() (crypto.Signer, error)
		want bool
	}{
		{"ECDSA P-224", ec(elliptic.P224()), false},
		{"ECDSA P-256", ec(elliptic.P256()), true},
		{"ECDSA P-384", ec(elliptic.P384()), true},
		{"ECDSA P-521", ec(elliptic.P521()), true},
		{"RSA 1024", rsaKey(1024), false},
		{"RSA 2048", rsaKey(2048), true},
		{"Ed25519", edKey, true},
	} {
		c := ca.issueFor(t, serverTemplate(), mustKey(t, tc.gen))
		if got := fipsKey(c); got != tc.want {
			t.Errorf("%s: fipsKey = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestFIPSModeRefusesUnapprovedChainsInOwnVerifiers: the chains moat
// verifies in its own callbacks (client certificates, and servers under a
// reloadable --cacert or --verify-*) follow crypto/tls's FIPS rule: a chain
// with a key FIPS mode does not approve is refused as a bad certificate,
// and the same chain passes outside FIPS mode.
func TestFIPSModeRefusesUnapprovedChainsInOwnVerifiers(t *testing.T) {
	ca := newTestCA(t, "fips CA")
	weak := mustKey(t, func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P224(), rand.Reader) })
	strong := mustKey(t, func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) })
	weakServer, strongServer := ca.issueFor(t, serverTemplate(), weak), ca.issueFor(t, serverTemplate(), strong)
	weakClient := ca.issueFor(t, leafTemplate("client", x509.ExtKeyUsageClientAuth), weak)
	strongClient := ca.issueFor(t, leafTemplate("client", x509.ExtKeyUsageClientAuth), strong)
	check := ServerCheck{Roots: ca.pool, Name: "localhost"}
	m := &material{pool: ca.pool()}
	all := Policy{AllowAll: true}
	now := time.Now()

	// Outside FIPS mode every chain here verifies.
	for _, err := range []error{
		check.verify([]*x509.Certificate{weakServer}, now),
		verifyClient(m, all, []*x509.Certificate{weakClient}, now),
	} {
		if err != nil {
			t.Fatalf("outside FIPS mode: %v", err)
		}
	}

	withFIPSMode(t)
	for name, err := range map[string]error{
		"server with a P-224 key": check.verify([]*x509.Certificate{weakServer}, now),
		"client with a P-224 key": verifyClient(m, all, []*x509.Certificate{weakClient}, now),
	} {
		var ae *AuthError
		if !errors.As(err, &ae) || ae.Reason != ReasonBadCert || !errors.Is(err, errNoFIPSChain) {
			t.Errorf("%s in FIPS mode: %v, want a bad-certificate refusal naming FIPS", name, err)
		}
	}
	for name, err := range map[string]error{
		"server with a P-256 key": check.verify([]*x509.Certificate{strongServer}, now),
		"client with a P-256 key": verifyClient(m, all, []*x509.Certificate{strongClient}, now),
	} {
		if err != nil {
			t.Errorf("%s in FIPS mode: %v", name, err)
		}
	}
}
