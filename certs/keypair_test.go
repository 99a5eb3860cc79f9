package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io/fs"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestKeyPairAcceptsEveryKeyEncoding(t *testing.T) {
	ca := newTestCA(t, "test CA")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	sec1, _ := x509.MarshalECPrivateKey(ecKey)
	pkcs8 := func(k any) []byte { return keyPEM(t, k) }

	for _, tc := range []struct {
		name string
		key  any
		pem  []byte
	}{
		{"RSA PKCS#1", rsaKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})},
		{"RSA PKCS#8", rsaKey, pkcs8(rsaKey)},
		{"ECDSA SEC1", ecKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})},
		{"ECDSA PKCS#8", ecKey, pkcs8(ecKey)},
		{"Ed25519 PKCS#8", edKey, pkcs8(edKey)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			leaf, err := sign(serverTemplate(), ca.cert, tc.key.(crypto.Signer).Public(), ca.key)
			if err != nil {
				t.Fatal(err)
			}
			certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
			writeTestFile(t, certFile, certPEM(leaf, ca.cert))
			writeTestFile(t, keyFile, tc.pem)
			got, err := loadKeyPair(certFile, keyFile)
			if err != nil {
				t.Fatal(err)
			}
			if got.Leaf == nil || got.Leaf.SerialNumber.Cmp(leaf.SerialNumber) != 0 || len(got.Certificate) != 2 {
				t.Fatalf("leaf or chain not loaded: %+v", got)
			}
		})
	}
}

func TestKeyPairErrorsNameTheFile(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "test CA")
	good, other := ca.issue(t, serverTemplate()), ca.issue(t, serverTemplate())
	certFile, keyFile := writeKeyPair(t, dir, "good", good)
	_, otherKey := writeKeyPair(t, dir, "other", other)
	garbage := filepath.Join(dir, "garbage.pem")
	writeTestFile(t, garbage, []byte("this is not PEM\n"))
	missing := filepath.Join(dir, "missing.pem")

	for _, tc := range []struct {
		name, cert, key, want string
		is                    error
		role                  FileRole // 0: a *KeyMismatchError
	}{
		{"mismatched pair", certFile, otherKey, "certificate " + certFile + " and key " + otherKey + " do not match", nil, 0},
		{"missing certificate", missing, keyFile, "certificate " + missing + ": no such file or directory", fs.ErrNotExist, RoleCertificate},
		{"missing key", certFile, missing, "key " + missing + ": no such file or directory", fs.ErrNotExist, RoleKey},
		{"garbage certificate", garbage, keyFile, "certificate " + garbage + ": no PEM certificate found", nil, RoleCertificate},
		{"garbage key", certFile, garbage, "key " + garbage + ": no PEM private key found", nil, RoleKey},
		{"certificate given as key", certFile, certFile, "key " + certFile + ": no PEM private key found (found CERTIFICATE)", nil, RoleKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadKeyPair(tc.cert, tc.key)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("error %v does not wrap %v", err, tc.is)
			}
			var fe *FileError
			var mismatch *KeyMismatchError
			switch {
			case tc.role == 0 && !errors.As(err, &mismatch):
				t.Fatalf("error %v is not a *KeyMismatchError", err)
			case tc.role != 0 && (!errors.As(err, &fe) || fe.Role != tc.role):
				t.Fatalf("error %v is not a *FileError of role %v", err, tc.role)
			}
		})
	}
	if _, err := loadKeyPair(certFile, keyFile); err != nil {
		t.Fatalf("good pair: %v", err)
	}
}

func TestKeyPairErrorNeverShowsKeyMaterial(t *testing.T) {
	key := newTestKey(t)
	// A key whose DER is corrupt must be refused without echoing it.
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	der[len(der)/2] ^= 0xff
	der = der[:len(der)-3]
	_, err := parsePrivateKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err == nil {
		t.Fatal("corrupt key accepted")
	}
	if strings.Contains(err.Error(), hex.EncodeToString(der[:8])) {
		t.Fatalf("error leaks key bytes: %v", err)
	}
}

func TestSelfSignedCoversHostsForAYear(t *testing.T) {
	cert, err := SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	if _, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || leaf.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Fatalf("key is %T, want ECDSA P-256", leaf.PublicKey)
	}
	for _, h := range DefaultHosts() {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("does not cover %s: %v", h, err)
		}
	}
	if life := time.Until(leaf.NotAfter); life < 364*24*time.Hour || life > 366*24*time.Hour {
		t.Errorf("valid for %v, want a year", life)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost"}); err != nil {
		t.Errorf("does not verify as its own root: %v", err)
	}
}

func TestFingerprintMatchesOpenSSLFormat(t *testing.T) {
	cert, err := SelfSigned([]string{"example.test"})
	if err != nil {
		t.Fatal(err)
	}
	fp := Fingerprint(cert.Leaf)
	if !regexp.MustCompile(`^([0-9A-F]{2}:){31}[0-9A-F]{2}$`).MatchString(fp) {
		t.Fatalf("fingerprint %q is not 32 colon-separated upper-case hex pairs", fp)
	}
	sum := sha256.Sum256(cert.Leaf.Raw)
	if got := strings.ReplaceAll(fp, ":", ""); got != strings.ToUpper(hex.EncodeToString(sum[:])) {
		t.Fatalf("fingerprint %s is not SHA-256 of the DER", fp)
	}
}

func TestLoadCAPool(t *testing.T) {
	dir := t.TempDir()
	a, b := newTestCA(t, "A"), newTestCA(t, "B")
	bundle := filepath.Join(dir, "ca.crt")
	writeTestFile(t, bundle, certPEM(a.cert, b.cert))
	pool, certs, err := LoadCAPool(bundle)
	if err != nil || len(certs) != 2 {
		t.Fatalf("LoadCAPool = %d certs, %v", len(certs), err)
	}
	leaf := b.issue(t, serverTemplate()).Leaf
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
		t.Fatalf("pool does not hold the second CA: %v", err)
	}
	empty := filepath.Join(dir, "empty.crt")
	writeTestFile(t, empty, nil)
	if _, _, err := LoadCAPool(empty); err == nil || err.Error() != "CA bundle "+empty+": no PEM certificate found" {
		t.Fatalf("empty bundle: %v", err)
	}
}
