package certs

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// namedPair issues a server certificate for hosts, signed by ca, written as
// name.crt/name.key in dir.
func namedPair(t *testing.T, ca *testCA, dir, name string, hosts ...string) (certFile, keyFile string, c *tls.Certificate) {
	t.Helper()
	tmpl := leafTemplate(name, x509.ExtKeyUsageServerAuth)
	addHosts(tmpl, hosts)
	c = ca.issue(t, tmpl)
	certFile, keyFile = writeKeyPair(t, dir, name, c)
	return certFile, keyFile, c
}

// pairsSource loads the files as one Source: the first pair the default.
func pairsSource(t *testing.T, files ...[2]string) *Source {
	t.Helper()
	src, err := NewFileSource(files[0][0], files[0][1], "")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files[1:] {
		more, err := NewFileSource(f[0], f[1], "")
		if err != nil {
			t.Fatal(err)
		}
		src.AddKeyPairs(more)
	}
	return src
}

// served completes a handshake with server name sni (none when "") and
// returns the CN of the certificate the server sent.
func served(t *testing.T, src *Source, sni string, edit func(*tls.Config)) string {
	t.Helper()
	var cn string
	client := &tls.Config{ServerName: sni, InsecureSkipVerify: true, VerifyConnection: func(cs tls.ConnectionState) error {
		cn = cs.PeerCertificates[0].Subject.CommonName
		return nil
	}}
	if edit != nil {
		edit(client)
	}
	if serr, cerr := handshake(t, src.ServerTLSConfig(Policy{}, false), client); serr != nil || cerr != nil {
		t.Fatalf("SNI %q: server %v, client %v", sni, serr, cerr)
	}
	return cn
}

// TestSeveralKeyPairsChosenBySNI: an exact SAN beats a wildcard given
// earlier; a wildcard covers one label only; case and a trailing dot do not
// matter; an IP literal matches an IP SAN; no SNI or an unknown name gets
// the first pair.
func TestSeveralKeyPairsChosenBySNI(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "pick CA")
	dc, dk, _ := namedPair(t, ca, dir, "default", "localhost")
	wc, wk, _ := namedPair(t, ca, dir, "wildcard", "*.example.com")
	ec, ek, _ := namedPair(t, ca, dir, "exact", "api.example.com")
	ic, ik, _ := namedPair(t, ca, dir, "ip", "10.9.8.7", "other.test")
	src := pairsSource(t, [2]string{dc, dk}, [2]string{wc, wk}, [2]string{ec, ek}, [2]string{ic, ik})
	for _, tc := range []struct{ sni, want string }{
		{"", "default"},
		{"localhost", "default"},
		{"api.example.com", "exact"},
		{"API.Example.COM.", "exact"},
		{"web.example.com", "wildcard"},
		{"a.b.example.com", "default"},
		{"example.com", "default"},
		{"other.test", "ip"},
		{"unknown.test", "default"},
	} {
		if got := served(t, src, tc.sni, nil); got != tc.want {
			t.Errorf("SNI %q: served %q, want %q", tc.sni, got, tc.want)
		}
	}
	// crypto/tls clients never send an IP as SNI; the picker still takes one.
	hello := &tls.ClientHelloInfo{ServerName: "10.9.8.7"}
	if c, _ := src.GetCertificate(hello); c.Leaf.Subject.CommonName != "ip" {
		t.Errorf("IP 10.9.8.7: picked %q", c.Leaf.Subject.CommonName)
	}
}

// TestKeyPairTheClientCannotUseGivesWay: an ECDSA and an RSA pair for the
// same name; a TLS 1.2 client offering only RSA suites gets the RSA one,
// others the first.
func TestKeyPairTheClientCannotUseGivesWay(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "pick CA")
	ec, ek, _ := namedPair(t, ca, dir, "ecdsa", "svc.example.com")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := leafTemplate("rsa", x509.ExtKeyUsageServerAuth)
	addHosts(tmpl, []string{"svc.example.com"})
	leaf, err := sign(tmpl, ca.cert, rsaKey.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	rc, rk := writeKeyPair(t, dir, "rsa", &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: rsaKey, Leaf: leaf})
	src := pairsSource(t, [2]string{ec, ek}, [2]string{rc, rk})
	if got := served(t, src, "svc.example.com", nil); got != "ecdsa" {
		t.Errorf("modern client: %q, want ecdsa", got)
	}
	rsaOnly := func(c *tls.Config) {
		c.MaxVersion = tls.VersionTLS12
		c.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	}
	if got := served(t, src, "svc.example.com", rsaOnly); got != "rsa" {
		t.Errorf("RSA-only client: %q, want rsa", got)
	}
}

// TestKeyPairsReloadEachOnTheirOwn: a new second pair goes into service on
// Reload; a broken second pair is reported by its file and holds back
// neither its own previous material nor the first pair's new one.
func TestKeyPairsReloadEachOnTheirOwn(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "pick CA")
	dc, dk, _ := namedPair(t, ca, dir, "default", "localhost")
	bc, bk, _ := namedPair(t, ca, dir, "b", "b.example.com")
	src := pairsSource(t, [2]string{dc, dk}, [2]string{bc, bk})

	next := t.TempDir()
	nc, nk, _ := namedPair(t, ca, next, "b2", "b.example.com")
	copyFile(t, nc, bc)
	copyFile(t, nk, bk)
	if err := src.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := served(t, src, "b.example.com", nil); got != "b2" {
		t.Fatalf("after reload: %q, want b2", got)
	}

	d2c, d2k, _ := namedPair(t, ca, next, "default2", "localhost")
	copyFile(t, d2c, dc)
	copyFile(t, d2k, dk)
	writeTestFile(t, bc, []byte("not PEM"))
	err := src.Reload()
	if err == nil || !strings.Contains(err.Error(), filepath.Base(bc)) {
		t.Fatalf("broken second pair: %v, want an error naming %s", err, bc)
	}
	if got := served(t, src, "b.example.com", nil); got != "b2" {
		t.Errorf("broken second pair: %q served, want the previous b2", got)
	}
	if got := served(t, src, "", nil); got != "default2" {
		t.Errorf("first pair: %q served, want the reloaded default2", got)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := readFile(RoleCertificate, from)
	if err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, to, b)
}

// TestInspectReportsNamesAndOverlaps: each chain's SNI names, and every
// name two files both cover, with the file served for it in this order
// (an exact SAN beats a wildcard; otherwise the earlier file).
func TestInspectReportsNamesAndOverlaps(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "pick CA")
	wild, _, _ := namedPair(t, ca, dir, "wild", "*.example.com", "10.0.0.1")
	exact, _, _ := namedPair(t, ca, dir, "exact", "API.example.com")
	apart, _, _ := namedPair(t, ca, dir, "apart", "other.test", "deep.api.example.com")
	again, _, _ := namedPair(t, ca, dir, "again", "*.example.com", "10.0.0.1")
	reports, err := Inspect(wild, exact, apart, again)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(reports[0].Names, ","); got != "*.example.com,10.0.0.1" {
		t.Errorf("names of wild: %s", got)
	}
	if got := strings.Join(reports[1].Names, ","); got != "api.example.com" {
		t.Errorf("names of exact: %s", got)
	}
	want := map[string][]Overlap{
		wild:  {{"api.example.com", exact, exact}, {"*.example.com", again, wild}, {"10.0.0.1", again, wild}},
		exact: {{"api.example.com", wild, exact}, {"api.example.com", again, exact}},
		apart: nil,
		again: {{"*.example.com", wild, wild}, {"10.0.0.1", wild, wild}, {"api.example.com", exact, exact}},
	}
	for _, r := range reports {
		if !slices.Equal(r.Overlaps, want[r.File]) {
			t.Errorf("%s: overlaps %+v, want %+v", filepath.Base(r.File), r.Overlaps, want[r.File])
		}
	}
}

// BenchmarkGetCertificateBySNI is the cost a handshake pays for the choice:
// one pair (no choice), and ten pairs with the name covered by the last
// one's wildcard (every pair looked at).
func BenchmarkGetCertificateBySNI(b *testing.B) {
	t := &testing.T{}
	dir := b.TempDir()
	ca := newTestCA(t, "bench CA")
	var files [][2]string
	for i := range 10 {
		host := fmt.Sprintf("host%d.example.net", i)
		if i == 9 {
			host = "*.last.example.net"
		}
		c, k, _ := namedPair(t, ca, dir, fmt.Sprintf("p%d", i), host, fmt.Sprintf("alt%d.example.net", i))
		files = append(files, [2]string{c, k})
	}
	hello := &tls.ClientHelloInfo{ServerName: "www.last.example.net", SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		SupportedCurves: []tls.CurveID{tls.CurveP256}, SupportedVersions: []uint16{tls.VersionTLS13}}
	for _, n := range []int{1, 10} {
		src := pairsSource(t, files[:n]...)
		b.Run(fmt.Sprintf("pairs=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := src.GetCertificate(hello); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
