package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// certFiles are the PEM files one proxy instance is configured with. Every
// proxy gets the same files, so they all sign with the same ECDSA P-256 key
// and send the same chain.
type certFiles struct {
	Chain    string // leaf then intermediate
	Key      string // PKCS#8 private key of the leaf
	Combined string // chain then key, for hitch and haproxy
	Bytes    int    // DER bytes of the chain as sent in the Certificate message
}

// benchServerName is the name every client asks for; the leaf carries it.
const benchServerName = "bench.moat.test"

// largeChainSANs is the number of DNS names in the large leaf. 600 names of
// ~50 bytes push the chain past 28 KiB, i.e. over one 16 KiB record and over
// the 8 KiB buffers some engines start with, which is the case it exercises.
const largeChainSANs = 600

// minLargeChainBytes is what the large chain must exceed to be worth its name.
const minLargeChainBytes = 28 * 1024

// writeCerts generates a root, an intermediate and a leaf (all ECDSA P-256)
// and writes the normal chain to dir/normal-* and the large one to dir/large-*.
func writeCerts(dir string) (normal, large certFiles, err error) {
	root, rootKey, err := makeCA("moat bench root", nil, nil)
	if err != nil {
		return normal, large, err
	}
	inter, interKey, err := makeCA("moat bench intermediate", root, rootKey)
	if err != nil {
		return normal, large, err
	}
	normal, err = writeLeaf(dir, "normal", []string{benchServerName}, inter, interKey)
	if err != nil {
		return normal, large, err
	}
	names := []string{benchServerName}
	for i := 0; len(names) < largeChainSANs; i++ {
		names = append(names, fmt.Sprintf("host-%04d.a-rather-long-service-name.moat-bench.example", i))
	}
	large, err = writeLeaf(dir, "large", names, inter, interKey)
	if err == nil && large.Bytes <= minLargeChainBytes {
		err = fmt.Errorf("large chain is only %d bytes, want > %d", large.Bytes, minLargeChainBytes)
	}
	return normal, large, err
}

func newSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}

// makeCA makes a CA certificate, self-signed when parent is nil.
func makeCA(cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// writeLeaf signs a leaf for names and writes <prefix>-chain.pem,
// <prefix>-key.pem and <prefix>-combined.pem.
func writeLeaf(dir, prefix string, names []string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (certFiles, error) {
	var f certFiles
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return f, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return f, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return f, err
	}
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})...)
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	f = certFiles{
		Chain:    filepath.Join(dir, prefix+"-chain.pem"),
		Key:      filepath.Join(dir, prefix+"-key.pem"),
		Combined: filepath.Join(dir, prefix+"-combined.pem"),
		Bytes:    len(der) + len(ca.Raw),
	}
	for path, data := range map[string][]byte{f.Chain: chain, f.Key: keyPEM, f.Combined: append(append([]byte{}, chain...), keyPEM...)} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return f, err
		}
	}
	return f, nil
}
