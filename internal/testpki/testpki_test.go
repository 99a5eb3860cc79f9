package testpki

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
)

// TestLargeChainVerifiesAndExceeds28KiB: the chain the 8 KiB-window tests
// rely on is really over 28 KiB, verifies for its names, and round-trips
// through PEM files as openssl would load them.
func TestLargeChainVerifiesAndExceeds28KiB(t *testing.T) {
	ca, leaf := LargeChain(600)
	if n := leaf.ChainBytes(); n <= 28<<10 {
		t.Fatalf("chain = %d bytes, want > 28 KiB", n)
	}
	if len(leaf.Cert.DNSNames) != 601 || len(leaf.Chain) != 1 {
		t.Fatalf("leaf has %d DNS names and %d intermediates", len(leaf.Cert.DNSNames), len(leaf.Chain))
	}
	inter := x509.NewCertPool()
	inter.AddCert(leaf.Chain[0])
	for _, name := range []string{"localhost", "127.0.0.1", "host-0599.large-flight-padding.moat.example.test"} {
		if _, err := leaf.Cert.Verify(x509.VerifyOptions{DNSName: name, Roots: ca.Pool(), Intermediates: inter}); err != nil {
			t.Fatalf("verify %s: %v", name, err)
		}
	}
	files, err := leaf.WritePEM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil || len(pair.Certificate) != 2 {
		t.Fatalf("LoadX509KeyPair: %v (%d certificates)", err, len(pair.Certificate))
	}
	root, err := os.ReadFile(files.CA)
	if err != nil || !x509.NewCertPool().AppendCertsFromPEM(root) {
		t.Fatalf("CA file %s unusable: %v", files.CA, err)
	}
}

// TestClientCertificateIsForClientAuth: a client leaf verifies for client
// authentication only.
func TestClientCertificateIsForClientAuth(t *testing.T) {
	ca := NewCA()
	cli := ca.IssueClient("alice")
	opts := x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := cli.Cert.Verify(opts); err != nil {
		t.Fatalf("client verify: %v", err)
	}
	opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	if _, err := cli.Cert.Verify(opts); err == nil {
		t.Fatal("client certificate verified for server auth")
	}
}
