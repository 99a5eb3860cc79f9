// Package testpki makes throwaway certificates for moat's tests, in process:
// a CA, intermediates, server and client leaves, and a large chain (a leaf
// with hundreds of DNS names) whose certificate flight exceeds 28 KiB, the
// size that once broke memory-BIO proxies with small read windows.
//
//	ca := testpki.NewCA()
//	srv := ca.Issue("localhost", "127.0.0.1")
//	cli := ca.IssueClient("alice")
//	serverCfg := &tls.Config{Certificates: []tls.Certificate{srv.TLS()}}
//	clientCfg := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cli.TLS()}}
//	files, err := srv.WritePEM(t.TempDir()) // for openssl -cert/-key/-CAfile
//
// Keys are ECDSA P-256, generated with crypto/rand; nothing here is for
// production.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

var serial atomic.Int64

// CA is a certificate authority that can issue leaves and intermediates.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// Chain is the CA's own certificate followed by its issuers, up to but not
	// including the root (empty for a root).
	Chain []*x509.Certificate
	root  *x509.Certificate
}

// Leaf is an issued certificate with its key and the chain to send with it.
type Leaf struct {
	Cert  *x509.Certificate
	Key   *ecdsa.PrivateKey
	Chain []*x509.Certificate // intermediates, leaf excluded, root excluded
	Root  *x509.Certificate
}

// NewCA returns a self-signed root CA.
func NewCA() *CA { return NewNamedCA("moat test root CA") }

// NewNamedCA returns a self-signed root CA whose subject CN is cn, for tests
// that tell several CAs apart in what they log.
func NewNamedCA(cn string) *CA {
	key := newKey()
	tmpl := template(cn)
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	cert := sign(tmpl, tmpl, &key.PublicKey, key)
	return &CA{Cert: cert, Key: key, root: cert}
}

// Intermediate issues a CA signed by ca.
func (ca *CA) Intermediate(name string) *CA {
	key := newKey()
	tmpl := template(name)
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	cert := sign(tmpl, ca.Cert, &key.PublicKey, ca.Key)
	chain := append([]*x509.Certificate{cert}, ca.Chain...)
	return &CA{Cert: cert, Key: key, Chain: chain, root: ca.root}
}

// Issue issues a server certificate. Names that parse as IP addresses become
// IP SANs, the rest DNS SANs; the first name is also the subject CN.
func (ca *CA) Issue(names ...string) *Leaf {
	return ca.issue(x509.ExtKeyUsageServerAuth, names, nil)
}

// IssueClient issues a client certificate with the given subject CN.
func (ca *CA) IssueClient(name string) *Leaf {
	return ca.issue(x509.ExtKeyUsageClientAuth, []string{name}, nil)
}

// IssueClientWith is IssueClient with edit applied to the template before it
// is signed, for the fields a test of identities needs: OUs, DNS and URI
// SANs, more key usages, a validity period of its own.
func (ca *CA) IssueClientWith(name string, edit func(*x509.Certificate)) *Leaf {
	return ca.issue(x509.ExtKeyUsageClientAuth, []string{name}, edit)
}

func (ca *CA) issue(usage x509.ExtKeyUsage, names []string, edit func(*x509.Certificate)) *Leaf {
	key := newKey()
	cn := "moat test leaf"
	if len(names) > 0 {
		cn = names[0]
	}
	tmpl := template(cn)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if usage == x509.ExtKeyUsageServerAuth {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	if edit != nil {
		edit(tmpl)
	}
	cert := sign(tmpl, ca.Cert, &key.PublicKey, ca.Key)
	return &Leaf{Cert: cert, Key: key, Chain: ca.Chain, Root: ca.root}
}

// Pool returns a pool holding the root of ca.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.root)
	return p
}

// LargeChain returns a root CA and a server leaf, issued by an intermediate,
// carrying "localhost", "127.0.0.1" and nSANs more DNS names. With nSANs=600
// the leaf plus intermediate exceed 28 KiB.
func LargeChain(nSANs int) (*CA, *Leaf) {
	root := NewCA()
	mid := root.Intermediate("moat test intermediate CA")
	names := []string{"localhost", "127.0.0.1"}
	for i := range nSANs {
		names = append(names, fmt.Sprintf("host-%04d.large-flight-padding.moat.example.test", i))
	}
	return root, mid.Issue(names...)
}

// TLS returns the leaf as a tls.Certificate with its chain.
func (l *Leaf) TLS() tls.Certificate {
	c := tls.Certificate{PrivateKey: l.Key, Leaf: l.Cert}
	c.Certificate = append(c.Certificate, l.Cert.Raw)
	for _, ic := range l.Chain {
		c.Certificate = append(c.Certificate, ic.Raw)
	}
	return c
}

// ChainBytes is the DER size of the leaf and its intermediates: roughly what
// a Certificate handshake message carries.
func (l *Leaf) ChainBytes() int {
	n := len(l.Cert.Raw)
	for _, ic := range l.Chain {
		n += len(ic.Raw)
	}
	return n
}

// Files are PEM file paths written by WritePEM.
type Files struct {
	Cert string // leaf followed by intermediates
	Key  string // PKCS#8 private key
	CA   string // root
}

// WritePEM writes the leaf chain, key and root as PEM files in dir.
func (l *Leaf) WritePEM(dir string) (Files, error) {
	name := fmt.Sprintf("leaf-%d", l.Cert.SerialNumber.Int64())
	f := Files{
		Cert: filepath.Join(dir, name+".crt"),
		Key:  filepath.Join(dir, name+".key"),
		CA:   filepath.Join(dir, name+"-ca.crt"),
	}
	var chain []byte
	for _, c := range append([]*x509.Certificate{l.Cert}, l.Chain...) {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	der, err := x509.MarshalPKCS8PrivateKey(l.Key)
	if err != nil {
		return Files{}, fmt.Errorf("marshal key: %w", err)
	}
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	root := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: l.Root.Raw})
	for path, data := range map[string][]byte{f.Cert: chain, f.Key: key, f.CA: root} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return Files{}, fmt.Errorf("write %s: %w", path, err)
		}
	}
	return f, nil
}

func newKey() *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(fmt.Sprintf("testpki: generate key: %v", err))
	}
	return key
}

func template(cn string) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"moat tests"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
	}
}

// sign panics on failure: the inputs are all made here, so an error is a bug
// in this package, and test helpers stay one line at the call site.
func sign(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, key *ecdsa.PrivateKey) *x509.Certificate {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		panic(fmt.Sprintf("testpki: create certificate %q: %v", tmpl.Subject.CommonName, err))
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(fmt.Sprintf("testpki: parse certificate %q: %v", tmpl.Subject.CommonName, err))
	}
	return cert
}
