package certs

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// bigChain is a leaf with 600 DNS SANs under an intermediate under a root,
// the kind of certificate that pushes a flight past 16 KiB.
type bigChain struct {
	root, inter *testCA
	leaf        *tls.Certificate
}

func newBigChain(t *testing.T) *bigChain {
	t.Helper()
	root := newTestCA(t, "test root")
	inter := root.issue(t, func() *x509.Certificate {
		tmpl := leafTemplate("test intermediate", 0)
		tmpl.ExtKeyUsage, tmpl.IsCA = nil, true
		tmpl.KeyUsage = x509.KeyUsageCertSign
		return tmpl
	}())
	interCA := &testCA{cert: inter.Leaf, key: inter.PrivateKey.(crypto.Signer)}
	tmpl := serverTemplate()
	for i := range 600 {
		tmpl.DNSNames = append(tmpl.DNSNames, fmt.Sprintf("svc-%03d.tenant-namespace.svc.cluster.local", i))
	}
	leaf := interCA.issue(t, tmpl)
	leaf.Certificate = append(leaf.Certificate, inter.Leaf.Raw)
	return &bigChain{root: root, inter: interCA, leaf: leaf}
}

// flightCounter counts what the server writes before it next reads: its
// first flight.
type flightCounter struct {
	net.Conn
	mu             sync.Mutex
	written, first int
}

func (c *flightCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.written += len(p)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *flightCounter) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.written > 0 && c.first == 0 {
		c.first = c.written
	}
	c.mu.Unlock()
	return c.Conn.Read(p)
}

// measureFlight handshakes with crypto/tls and returns the server's first
// flight in bytes.
func measureFlight(t *testing.T, chain *tls.Certificate, roots *x509.CertPool, version uint16, curve tls.CurveID) int {
	t.Helper()
	sc, cc := socketPair(t)
	counter := &flightCounter{Conn: sc}
	server := &tls.Config{
		Certificates: []tls.Certificate{*chain},
		// crypto/tls would add a NewSessionTicket to the TLS 1.3 flight;
		// the estimate leaves tickets out.
		SessionTicketsDisabled: true,
		CurvePreferences:       []tls.CurveID{curve},
	}
	client := &tls.Config{RootCAs: roots, ServerName: "localhost", MaxVersion: version, CurvePreferences: []tls.CurveID{curve}}
	done := make(chan error, 1)
	go func() {
		s := tls.Server(counter, server)
		done <- s.Handshake()
		s.Close()
	}()
	c := tls.Client(cc, client)
	cc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c.Close()
	if got := c.ConnectionState().CurveID; got != curve {
		t.Fatalf("negotiated %v, want %v", got, curve)
	}
	counter.mu.Lock()
	defer counter.mu.Unlock()
	return counter.first
}

func TestFlightEstimateMatchesRealHandshakes(t *testing.T) {
	chain := newBigChain(t)
	certs := []*x509.Certificate{chain.leaf.Leaf, chain.inter.cert}
	checkFlightEstimate(t, chain.leaf, chain.root.pool())
	if est := estimateFlight(certs); est.TLS13 <= LargeFlight {
		t.Fatalf("600-SAN chain estimated at %d bytes; the test needs one past 16 KiB", est.TLS13)
	}
}

func TestFlightEstimateMatchesSmallSelfSigned(t *testing.T) {
	cert, err := SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	checkFlightEstimate(t, cert, roots)
}

// checkFlightEstimate compares estimateFlight with what crypto/tls sends for
// chain in each protocol version and key exchange.
func checkFlightEstimate(t *testing.T, chain *tls.Certificate, roots *x509.CertPool) {
	t.Helper()
	var certs []*x509.Certificate
	for _, der := range chain.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	est := estimateFlight(certs)
	for _, tc := range []struct {
		name     string
		version  uint16
		curve    tls.CurveID
		estimate int
	}{
		{"TLS 1.3 X25519", tls.VersionTLS13, tls.X25519, est.TLS13},
		{"TLS 1.3 X25519MLKEM768", tls.VersionTLS13, tls.X25519MLKEM768, est.TLS13Hybrid},
		{"TLS 1.2 ECDHE X25519", tls.VersionTLS12, tls.X25519, est.TLS12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			measured := measureFlight(t, chain, roots, tc.version, tc.curve)
			off := math.Abs(float64(tc.estimate-measured)) / float64(measured)
			t.Logf("%d certificates, %d DER bytes in the leaf: measured %d, estimated %d (%.2f%% off)",
				len(certs), len(certs[0].Raw), measured, tc.estimate, 100*off)
			if off > 0.05 {
				t.Fatalf("estimate %d is %.1f%% from measured %d", tc.estimate, 100*off, measured)
			}
		})
	}
}

func TestInspectReportsLargeChain(t *testing.T) {
	chain := newBigChain(t)
	file := filepath.Join(t.TempDir(), "chain.pem")
	writeTestFile(t, file, certPEM(chain.leaf.Leaf, chain.inter.cert))
	reports, err := Inspect(file)
	if err != nil {
		t.Fatal(err)
	}
	r := reports[0]
	if len(r.Certificates) != 2 || r.Certificates[0].SANCount != 603 || r.Certificates[0].KeyType != "ECDSA P-256" {
		t.Fatalf("certificates: %d, SANs %d, key %s", len(r.Certificates), r.Certificates[0].SANCount, r.Certificates[0].KeyType)
	}
	if len(r.Problems) != 1 || !strings.Contains(r.Problems[0], "first flight is") {
		t.Fatalf("problems %q, want only the flight-size warning", r.Problems)
	}
}

func TestInspectFindsChainProblems(t *testing.T) {
	chain := newBigChain(t)
	leaf, inter, root := chain.leaf.Leaf, chain.inter.cert, chain.root.cert
	self, _ := SelfSigned(nil)
	expired := chain.inter.issue(t, func() *x509.Certificate {
		tmpl := serverTemplate()
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)
		return tmpl
	}())
	future := chain.inter.issue(t, func() *x509.Certificate {
		tmpl := serverTemplate()
		tmpl.NotBefore = time.Now().Add(time.Hour)
		return tmpl
	}())
	dir := t.TempDir()
	for _, tc := range []struct {
		name  string
		chain []*x509.Certificate
		want  []string // substrings, one per expected problem
	}{
		{"complete", []*x509.Certificate{leaf, inter, root}, []string{"first flight"}},
		{"leaf not first", []*x509.Certificate{inter, leaf}, []string{"leaf is not first", "out of order", "first flight"}},
		{"missing intermediate", []*x509.Certificate{leaf}, []string{"missing intermediate", "first flight"}},
		{"gap in chain", []*x509.Certificate{leaf, root}, []string{"missing intermediate", "first flight"}},
		{"self-signed leaf", []*x509.Certificate{self.Leaf}, []string{"self-signed"}},
		{"expired", []*x509.Certificate{expired.Leaf, inter}, []string{"expired"}},
		{"not yet valid", []*x509.Certificate{future.Leaf, inter}, []string{"not valid until"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".pem")
			writeTestFile(t, file, certPEM(tc.chain...))
			reports, err := Inspect(file)
			if err != nil {
				t.Fatal(err)
			}
			got := reports[0].Problems
			if len(got) != len(tc.want) {
				t.Fatalf("problems %q, want %d matching %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to mention %q", i, got[i], w)
				}
			}
		})
	}
}

func TestInspectNamesUnreadableFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	writeTestFile(t, bad, []byte("nope"))
	if _, err := Inspect(bad); err == nil || err.Error() != "certificate "+bad+": no PEM certificate found" {
		t.Fatalf("Inspect = %v", err)
	}
}
