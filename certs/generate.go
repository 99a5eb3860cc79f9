package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// DefaultHosts returns the names a self-signed or generated server
// certificate covers when none are given. The slice is the caller's own.
func DefaultHosts() []string { return []string{"localhost", "127.0.0.1", "::1"} }

// ClientCN and ClientSPIFFE identify the client certificate Generate makes.
const (
	ClientCN     = "moat-client"
	ClientSPIFFE = "spiffe://moat.local/client"
)

// SelfSigned makes an in-memory ECDSA P-256 server certificate valid for one
// year, with hosts as DNS or IP SANs (DefaultHosts when empty). It is for
// --self-signed: nothing is written to disk.
func SelfSigned(hosts []string) (*tls.Certificate, error) {
	if len(hosts) == 0 {
		hosts = DefaultHosts()
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	tmpl := leafTemplate(hosts[0], x509.ExtKeyUsageServerAuth)
	addHosts(tmpl, hosts)
	leaf, err := sign(tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// Files names what Generate wrote.
type Files struct {
	CACert, CAKey         string
	ServerCert, ServerKey string
	ClientCert, ClientKey string
}

func (f Files) all() []string {
	return []string{f.CACert, f.CAKey, f.ServerCert, f.ServerKey, f.ClientCert, f.ClientKey}
}

// Generate writes a development CA, a server certificate for hosts
// (DefaultHosts when empty) and a client certificate (CN ClientCN, URI SAN
// ClientSPIFFE), all signed by the CA, as ca.crt ca.key server.crt server.key
// client.crt client.key in dir. Keys are written 0600. Existing files are
// left alone and reported unless force is set.
func Generate(dir string, hosts []string, force bool) (Files, error) {
	if len(hosts) == 0 {
		hosts = DefaultHosts()
	}
	f := Files{
		CACert: filepath.Join(dir, "ca.crt"), CAKey: filepath.Join(dir, "ca.key"),
		ServerCert: filepath.Join(dir, "server.crt"), ServerKey: filepath.Join(dir, "server.key"),
		ClientCert: filepath.Join(dir, "client.crt"), ClientKey: filepath.Join(dir, "client.key"),
	}
	if !force {
		for _, p := range f.all() {
			if _, err := os.Lstat(p); err == nil {
				return f, fmt.Errorf("%s: %w (refusing to overwrite)", p, fs.ErrExist)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return f, fmt.Errorf("%s: %w", dir, err)
	}
	ca, caKey, err := newCA()
	if err != nil {
		return f, err
	}
	server := leafTemplate(hosts[0], x509.ExtKeyUsageServerAuth)
	addHosts(server, hosts)
	client := leafTemplate(ClientCN, x509.ExtKeyUsageClientAuth)
	spiffe, _ := url.Parse(ClientSPIFFE)
	client.URIs = []*url.URL{spiffe}

	if err := writePair(f.CACert, f.CAKey, ca, caKey); err != nil {
		return f, err
	}
	for _, p := range []struct {
		tmpl              *x509.Certificate
		certFile, keyFile string
	}{{server, f.ServerCert, f.ServerKey}, {client, f.ClientCert, f.ClientKey}} {
		if err := issueTo(p.tmpl, ca, caKey, p.certFile, p.keyFile); err != nil {
			return f, err
		}
	}
	return f, nil
}

func newCA() (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := leafTemplate("moat development CA", 0)
	tmpl.ExtKeyUsage = nil
	tmpl.NotAfter = tmpl.NotBefore.Add(2 * 365 * 24 * time.Hour)
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.MaxPathLenZero = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	ca, err := sign(tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("sign CA: %w", err)
	}
	return ca, key, nil
}

func issueTo(tmpl, ca *x509.Certificate, caKey crypto.Signer, certFile, keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate key for %s: %w", certFile, err)
	}
	cert, err := sign(tmpl, ca, key.Public(), caKey)
	if err != nil {
		return fmt.Errorf("sign %s: %w", certFile, err)
	}
	return writePair(certFile, keyFile, cert, key)
}

// leafTemplate is a one-year end-entity template. NotBefore is an hour back
// so that a peer whose clock is slightly behind still accepts it.
func leafTemplate(cn string, usage x509.ExtKeyUsage) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"moat"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{usage},
		BasicConstraintsValid: true,
	}
}

func addHosts(tmpl *x509.Certificate, hosts []string) {
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
}

// sign fills in a random 128-bit serial and has crypto/x509 sign the template.
func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(1)) // never zero
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func writePair(certFile, keyFile string, cert *x509.Certificate, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key %s: %w", keyFile, err)
	}
	if err := writeFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	return writeFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644)
}

// writeFile writes through a temporary file and a rename, so a reader (or a
// watching Source) never sees half a file, and a key is never readable by
// others even for a moment: CreateTemp makes the file 0600.
func writeFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".moat-tmp-*")
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	_, err = tmp.Write(data)
	err = errors.Join(err, tmp.Chmod(mode), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
