package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testCA is a throwaway certificate authority for tests.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newTestCA(t *testing.T, cn string) *testCA {
	t.Helper()
	key := newTestKey(t)
	tmpl := leafTemplate(cn, 0)
	tmpl.ExtKeyUsage = nil
	tmpl.IsCA = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	cert, err := sign(tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

func newTestKey(t *testing.T) crypto.Signer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// issue signs tmpl with the CA for a fresh P-256 key.
func (ca *testCA) issue(t *testing.T, tmpl *x509.Certificate) *tls.Certificate {
	t.Helper()
	key := newTestKey(t)
	leaf, err := sign(tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: key, Leaf: leaf}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

func serverTemplate() *x509.Certificate {
	tmpl := leafTemplate("localhost", x509.ExtKeyUsageServerAuth)
	addHosts(tmpl, DefaultHosts())
	return tmpl
}

func certPEM(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

func keyPEM(t *testing.T, key crypto.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func writeTestFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// writeKeyPair writes cert and key as name.crt and name.key in dir.
func writeKeyPair(t *testing.T, dir, name string, c *tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writeTestFile(t, certFile, certPEM(c.Leaf))
	writeTestFile(t, keyFile, keyPEM(t, c.PrivateKey))
	return certFile, keyFile
}

// socketPair is an in-memory connected pair with kernel buffers. net.Pipe
// would be simpler, but it has no buffer at all: a TLS 1.2 server refusing a
// client's certificate writes its alert while the client is still writing
// the rest of its flight, and both block forever. Real sockets buffer.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		conns[i], err = net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return conns[0], conns[1]
}

// handshake runs a TLS handshake over an in-memory socket pair, then has the
// server write two bytes so that the client reads whatever the server sends
// after the handshake (a TLS 1.3 client finishes before the server has
// checked its certificate and learns of a refusal only on its first read).
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	sc, cc := socketPair(t)
	deadline := time.Now().Add(10 * time.Second)
	sc.SetDeadline(deadline)
	cc.SetDeadline(deadline)
	done := make(chan error, 1)
	go func() {
		s := tls.Server(sc, server)
		err := s.Handshake()
		if err == nil {
			_, err = s.Write([]byte("ok"))
		}
		sc.Close()
		done <- err
	}()
	c := tls.Client(cc, client)
	clientErr = c.Handshake()
	if clientErr == nil {
		_, clientErr = io.ReadFull(c, make([]byte, 2))
	}
	cc.Close()
	return <-done, clientErr
}

// remoteAlert extracts the alert a peer sent from a crypto/tls error, whose
// alert type is unexported.
func remoteAlert(err error) (tls.AlertError, bool) {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" {
		return 0, false
	}
	v := reflect.ValueOf(op.Err)
	if v.Kind() != reflect.Uint8 {
		return 0, false
	}
	return tls.AlertError(v.Uint()), true
}

// loadKeyPair loads a certificate and key the way moat does, through a
// file Source, and returns the certificate in service.
func loadKeyPair(certFile, keyFile string) (*tls.Certificate, error) {
	src, err := NewFileSource(certFile, keyFile, "")
	if err != nil {
		return nil, err
	}
	return src.Certificate(), nil
}

// serial is the serial number of the certificate src serves, nil if none.
func serial(src *Source) *big.Int {
	if c := src.Certificate(); c != nil && c.Leaf != nil {
		return c.Leaf.SerialNumber
	}
	return nil
}
