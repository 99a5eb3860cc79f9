package certs

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-proxy/moat/internal/testpki"
)

// makeCRL signs a CRL by ca listing serials, valid until next.
func makeCRL(t testing.TB, ca *testpki.CA, next time.Time, serials ...*big.Int) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(time.Now().UnixNano()), ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: next}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func crlPEM(ders ...[]byte) []byte {
	var b []byte
	for _, d := range ders {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: d})...)
	}
	return b
}

func writeCRL(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func chainOf(l *testpki.Leaf) []*x509.Certificate {
	return append(append([]*x509.Certificate{l.Cert}, l.Chain...), l.Root)
}

// TestRevocationListRefusesListedCertificates: a leaf listed by its
// issuer's CRL and a leaf under an intermediate listed by the root's CRL are
// refused as revoked; a sibling is not; DER and multi-block PEM both load.
func TestRevocationListRefusesListedCertificates(t *testing.T) {
	root := testpki.NewCA()
	inter := root.Intermediate("moat test intermediate")
	good, bad := root.IssueClient("good"), root.IssueClient("bad")
	underInter, otherInter := inter.IssueClient("under-inter"), root.Intermediate("other intermediate")
	underOther := otherInter.IssueClient("under-other")
	dir := t.TempDir()
	rootCRL := writeCRL(t, dir, "root.der", makeCRL(t, root, time.Now().Add(time.Hour), bad.Cert.SerialNumber, otherInter.Cert.SerialNumber))
	interCRL := writeCRL(t, dir, "inter.pem", crlPEM(makeCRL(t, inter, time.Now().Add(time.Hour), big.NewInt(999999))))
	cas := []*x509.Certificate{root.Cert, inter.Cert}
	r, err := NewRevocationList([]string{rootCRL, interCRL}, func() []*x509.Certificate { return cas }, CRLExpiredWarn)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		leaf *testpki.Leaf
		want Reason
	}{
		{"good leaf", good, ""},
		{"revoked leaf", bad, ReasonRevoked},
		{"leaf under a good intermediate", underInter, ""},
		{"leaf under a revoked intermediate", underOther, ReasonRevoked},
	} {
		err := verifyClient(&material{pool: root.Pool()}, Policy{AllowAll: true, Revocation: r}, chainOf(tc.leaf)[:len(chainOf(tc.leaf))-1], time.Now())
		var ae *AuthError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (!errors.As(err, &ae) || ae.Reason != tc.want):
			t.Errorf("%s: got %v, want reason %s", tc.name, err, tc.want)
		}
	}
	if n := len(r.CRLs()); n != 2 {
		t.Errorf("%d CRLs in service, want 2", n)
	}
}

// TestRevocationListBadFilesNameTheFile: a missing file, one that is not a
// CRL, and a CRL from a CA outside the bundle fail to load with a FileError
// of RoleCRL naming the file; a failed reload keeps the lists in service.
func TestRevocationListBadFilesNameTheFile(t *testing.T) {
	root, stranger := testpki.NewCA(), testpki.NewNamedCA("stranger")
	cas := func() []*x509.Certificate { return []*x509.Certificate{root.Cert} }
	dir := t.TempDir()
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"missing", "no such file", nil},
		{"garbage", "not a PEM or DER CRL", []byte("hello")},
		{"cert.pem", `no "X509 CRL" PEM block`, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Cert.Raw})},
		{"stranger.crl", "not a CA in the CA bundle", makeCRL(t, stranger, time.Now().Add(time.Hour))},
	} {
		path := filepath.Join(dir, tc.name)
		if tc.data != nil {
			writeCRL(t, dir, tc.name, tc.data)
		}
		_, err := NewRevocationList([]string{path}, cas, CRLExpiredWarn)
		var fe *FileError
		if !errors.As(err, &fe) || fe.Role != RoleCRL || fe.Path != path || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want a CRL FileError for %s containing %q", tc.name, err, path, tc.want)
		}
	}
	good := writeCRL(t, dir, "good.crl", makeCRL(t, root, time.Now().Add(time.Hour), big.NewInt(7)))
	r, err := NewRevocationList([]string{good}, cas, CRLExpiredWarn)
	if err != nil {
		t.Fatal(err)
	}
	writeCRL(t, dir, "good.crl", makeCRL(t, stranger, time.Now().Add(time.Hour)))
	if err := r.Reload(); err == nil {
		t.Fatal("a CRL signed by a stranger reloaded")
	}
	if c := r.CRLs(); len(c) != 1 || c[0].Revoked != 1 {
		t.Fatalf("after a failed reload the lists in service are %+v, want the old one", c)
	}
}

// TestExpiredCRLPolicy: under warn an expired CRL still revokes and admits
// the rest; under refuse every certificate of its issuer is refused.
func TestExpiredCRLPolicy(t *testing.T) {
	root := testpki.NewCA()
	good := root.IssueClient("good")
	path := writeCRL(t, t.TempDir(), "old.crl", makeCRL(t, root, time.Now().Add(-time.Minute)))
	cas := func() []*x509.Certificate { return []*x509.Certificate{root.Cert} }
	for _, tc := range []struct {
		policy ExpiredCRLPolicy
		want   Reason
	}{{CRLExpiredWarn, ""}, {CRLExpiredRefuse, ReasonCRLExpired}} {
		r, err := NewRevocationList([]string{path}, cas, tc.policy)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Expired(time.Now())) != 1 {
			t.Errorf("Expired() does not list the stale CRL")
		}
		err = verifyClient(&material{pool: root.Pool()}, Policy{AllowAll: true, Revocation: r}, []*x509.Certificate{good.Cert}, time.Now())
		var ae *AuthError
		if (tc.want == "") != (err == nil) || (err != nil && (!errors.As(err, &ae) || ae.Reason != tc.want)) {
			t.Errorf("policy %d: got %v, want reason %q", tc.policy, err, tc.want)
		}
	}
}

// TestServerCheckIdentityReplacesHostName: with identity rules, a server
// certificate carrying only a URI SAN is accepted when a rule matches and
// refused as not-allowed (naming what was required) otherwise; without
// rules, the name is checked as crypto/tls would.
func TestServerCheckIdentityReplacesHostName(t *testing.T) {
	ca := testpki.NewCA()
	svid := ca.IssueClientWith("", func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		c.Subject.CommonName = ""
		c.URIs = []*url.URL{{Scheme: "spiffe", Host: "td", Path: "/ns/db/sa/postgres"}}
	})
	pool := ca.Pool()
	roots := func() *x509.CertPool { return pool }
	chain := []*x509.Certificate{svid.Cert}
	for _, tc := range []struct {
		name     string
		sc       ServerCheck
		want     Reason
		required string
	}{
		{"exact URI", ServerCheck{Roots: roots, Name: "db", Identities: Policy{URIs: []string{"spiffe://td/ns/db/sa/postgres"}}}, "", ""},
		{"wildcard URI", ServerCheck{Roots: roots, Identities: Policy{URIs: []string{"spiffe://td/ns/db/**"}}}, "", ""},
		{"other URI", ServerCheck{Roots: roots, Identities: Policy{URIs: []string{"spiffe://td/ns/web/*"}}}, ReasonNotAllowed, "URI=spiffe://td/ns/web/*"},
		{"host name only", ServerCheck{Roots: roots, Name: "db.internal"}, ReasonNotAllowed, "the name db.internal"},
		{"foreign CA", ServerCheck{Roots: func() *x509.CertPool { return testpki.NewCA().Pool() }, Identities: Policy{URIs: []string{"spiffe://td/ns/db/sa/postgres"}}}, ReasonUnknownCA, ""},
	} {
		err := tc.sc.verify(chain, time.Now())
		var ae *AuthError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.want != "" && (!errors.As(err, &ae) || ae.Reason != tc.want || ae.Required != tc.required || ae.Peer != PeerServer):
			t.Errorf("%s: got %v, want reason %s requiring %q", tc.name, err, tc.want, tc.required)
		}
	}
}

// BenchmarkRevocationCheck measures what --crl adds to a handshake: the
// lookup of a two-certificate chain in a CRL of 100,000 entries.
func BenchmarkRevocationCheck(b *testing.B) {
	root := testpki.NewCA()
	leaf := root.IssueClient("leaf")
	serials := make([]*big.Int, 100000)
	for i := range serials {
		serials[i] = big.NewInt(int64(1_000_000 + i))
	}
	path := writeCRL(b, b.TempDir(), "big.crl", makeCRL(b, root, time.Now().Add(time.Hour), serials...))
	start := time.Now()
	r, err := NewRevocationList([]string{path}, func() []*x509.Certificate { return []*x509.Certificate{root.Cert} }, CRLExpiredWarn)
	if err != nil {
		b.Fatal(err)
	}
	load := time.Since(start)
	chains := [][]*x509.Certificate{{leaf.Cert, root.Cert}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := r.check(chains, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(load.Milliseconds()), "load-ms")
}

// TestRevocationListFollowsTheTrustBundle: unchanged CRL files are checked
// again when the CA bundle changes; a CRL whose signer left the bundle is a
// failed reload, and the lists in service stay.
func TestRevocationListFollowsTheTrustBundle(t *testing.T) {
	root, other := testpki.NewCA(), testpki.NewNamedCA("other")
	cas := []*x509.Certificate{root.Cert}
	path := writeCRL(t, t.TempDir(), "ca.crl", makeCRL(t, root, time.Now().Add(time.Hour), big.NewInt(5)))
	r, err := NewRevocationList([]string{path}, func() []*x509.Certificate { return cas }, CRLExpiredWarn)
	if err != nil {
		t.Fatal(err)
	}
	if res := r.reload(); res.changed || res.err != nil {
		t.Fatalf("a reload of unchanged files against an unchanged bundle: %+v", res)
	}
	cas = []*x509.Certificate{other.Cert}
	if err := r.Reload(); err == nil || !strings.Contains(err.Error(), "not a CA in the CA bundle") {
		t.Fatalf("reload after the signer left the bundle: %v", err)
	}
	if len(r.CRLs()) != 1 {
		t.Fatal("the lists in service were dropped")
	}
}
