package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"strings"
	"time"

	"github.com/moat-proxy/moat/internal/testpki"
)

// soakPKI is the soak's certificates: moat's server chain and client CA
// (as files), the legitimate client's configuration, and the oversized
// client certificate of the big-certificate attack.
type soakPKI struct {
	files    testpki.Files
	legitTLS *tls.Config
	bigCert  tls.Certificate
	bigBytes int // DER bytes of the big certificate
}

// bigCertTarget is the size of the oversized client certificate: just under
// the 256 KiB that crypto/tls accepts for a Certificate message, so a server
// built on it must buffer nearly all of it before it can refuse anything.
const bigCertTarget = 250 << 10

func newSoakPKI(dir string) (*soakPKI, error) {
	ca := testpki.NewCA()
	files, err := ca.Issue("localhost", "127.0.0.1").WritePEM(dir)
	if err != nil {
		return nil, err
	}
	legit := ca.IssueClient("soak-legitimate-client").TLS()
	big, n, err := bigClientCert(ca)
	if err != nil {
		return nil, err
	}
	return &soakPKI{
		files: files,
		legitTLS: &tls.Config{
			RootCAs:      ca.Pool(),
			ServerName:   "localhost",
			Certificates: []tls.Certificate{legit},
			MinVersion:   tls.VersionTLS12,
		},
		bigCert:  big,
		bigBytes: n,
	}, nil
}

// bigClientCert issues, from the CA moat trusts, a client certificate padded
// to about bigCertTarget bytes with long DNS names: the shape of a real but
// absurd certificate rather than an opaque blob.
func bigClientCert(ca *testpki.CA) (tls.Certificate, int, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, 0, err
	}
	label := strings.Repeat("x", 60)
	var names []string
	for size := 0; size < bigCertTarget-2048; {
		n := fmt.Sprintf("n%05d-%s.%s.%s.pad.soak.moat.test", len(names), label[:53], label, label)
		names = append(names, n)
		size += len(n) + 4 // the name and its DER tag and length
	}
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(),
		Subject:      pkix.Name{CommonName: "soak big certificate"},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return tls.Certificate{}, 0, fmt.Errorf("big client certificate: %w", err)
	}
	if len(der) > 255<<10 {
		return tls.Certificate{}, 0, fmt.Errorf("big client certificate is %d bytes, over 255 KiB", len(der))
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, len(der), nil
}
