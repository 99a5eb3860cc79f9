package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/moat-proxy/moat/internal/boundedfile"
)

// parseKeyPair parses a PEM certificate chain (leaf first) and its PEM
// private key (PKCS#1, PKCS#8 or SEC1; RSA, ECDSA or Ed25519) from bytes
// already read, so that Source can hash exactly the bytes it parses. Errors
// are one line and name the file at fault. The certificate has Leaf set.
func parseKeyPair(certFile string, certPEM []byte, keyFile string, keyPEM []byte) (*tls.Certificate, error) {
	chain, err := parseCertificates(certPEM)
	if err != nil {
		return nil, &FileError{Role: RoleCertificate, Path: certFile, Err: err}
	}
	key, err := parsePrivateKey(keyPEM)
	if err != nil {
		return nil, &FileError{Role: RoleKey, Path: keyFile, Err: err}
	}
	pub, ok := chain[0].PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return nil, &KeyMismatchError{CertFile: certFile, KeyFile: keyFile}
	}
	cert := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert, nil
}

// readFile reads a file and reports failure as a *FileError of role, without
// the "open" noise of *fs.PathError.
func readFile(role FileRole, path string) ([]byte, error) {
	limit := int64(boundedfile.MaxPEM)
	if role == RoleCRL {
		limit = boundedfile.MaxCRL
	}
	b, err := boundedfile.Read(path, limit)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, &FileError{Role: role, Path: path, Err: err}
	}
	return b, nil
}

// parseCertificates returns every CERTIFICATE block in order. Other block
// types are skipped so that a combined cert+key file still loads.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for n := 1; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate found")
	}
	return certs, nil
}

// parsePrivateKey finds the first PEM private key block and parses it in
// whichever encoding its header names, falling back to the others because
// tools disagree on headers. Errors never include key material.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	var seen []string
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if !strings.HasSuffix(block.Type, "PRIVATE KEY") {
			seen = append(seen, block.Type)
			continue
		}
		if _, ok := block.Headers["DEK-Info"]; ok {
			return nil, errors.New("encrypted PEM keys are not supported")
		}
		return parseKeyDER(block.Bytes)
	}
	if len(seen) > 0 {
		return nil, fmt.Errorf("no PEM private key found (found %s)", strings.Join(seen, ", "))
	}
	return nil, errors.New("no PEM private key found")
}

func parseKeyDER(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		switch k := k.(type) {
		case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
			return k.(crypto.Signer), nil
		default:
			return nil, fmt.Errorf("unsupported private key type %T", k)
		}
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("private key is not PKCS#1, PKCS#8 or SEC1")
}

// LoadCAPool reads a PEM bundle of trusted certificates. It returns the pool
// for verification and the certificates themselves for reporting.
func LoadCAPool(file string) (*x509.CertPool, []*x509.Certificate, error) {
	data, err := readFile(RoleCABundle, file)
	if err != nil {
		return nil, nil, err
	}
	return parseCAPool(file, data)
}

func parseCAPool(file string, data []byte) (*x509.CertPool, []*x509.Certificate, error) {
	certs, err := parseCertificates(data)
	if err != nil {
		return nil, nil, &FileError{Role: RoleCABundle, Path: file, Err: err}
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, certs, nil
}

// Fingerprint returns the SHA-256 fingerprint of a certificate's DER in the
// form `openssl x509 -fingerprint -sha256` prints: upper-case hex pairs joined
// by colons.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	var b bytes.Buffer
	for i, v := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", v)
	}
	return b.String()
}
