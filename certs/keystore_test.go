package certs

import (
	"bytes"
	"crypto/x509"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"software.sslmate.com/src/go-pkcs12"
)

func p12(t *testing.T, ca *testCA, leaf *x509.Certificate, key any, password string) []byte {
	t.Helper()
	data, err := pkcs12.Modern.Encode(key, leaf, []*x509.Certificate{ca.cert}, password)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestKeystoreLoadsPEMAndPKCS12AndReloads: both formats load, with the
// chain that was in the file; a reload may switch formats; a wrong
// password or a corrupt file keeps the old material in service and names
// the keystore.
func TestKeystoreLoadsPEMAndPKCS12AndReloads(t *testing.T) {
	ca := newTestCA(t, "keystore CA")
	dir := t.TempDir()
	path := filepath.Join(dir, "server.p12")
	first := ca.issue(t, serverTemplate())
	writeTestFile(t, path, p12(t, ca, first.Leaf, first.PrivateKey, "secret"))

	src, err := NewKeystoreSource(path, "secret", "")
	if err != nil {
		t.Fatal(err)
	}
	got := src.Certificate()
	if !got.Leaf.Equal(first.Leaf) || len(got.Certificate) != 2 || !bytes.Equal(got.Certificate[1], ca.cert.Raw) {
		t.Fatalf("PKCS#12 keystore loaded %d certificates, leaf %v", len(got.Certificate), got.Leaf.Subject)
	}

	// A combined PEM, key first: the order of blocks does not matter.
	second := ca.issue(t, serverTemplate())
	writeTestFile(t, path, append(keyPEM(t, second.PrivateKey), certPEM(second.Leaf, ca.cert)...))
	if err := src.Reload(); err != nil {
		t.Fatal(err)
	}
	if !src.Certificate().Leaf.Equal(second.Leaf) || len(src.Certificate().Certificate) != 2 {
		t.Fatal("the PEM keystore that replaced the PKCS#12 one is not in service")
	}

	third := ca.issue(t, serverTemplate())
	writeTestFile(t, path, p12(t, ca, third.Leaf, third.PrivateKey, "other password"))
	err = src.Reload()
	var fe *FileError
	if !errors.Is(err, ErrKeystorePassword) || !errors.As(err, &fe) || fe.Role != RoleKeystore || fe.Path != path {
		t.Fatalf("wrong password: %v", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("the error quotes the password: %v", err)
	}
	writeTestFile(t, path, []byte("not a keystore at all"))
	if err := src.Reload(); !errors.As(err, &fe) || fe.Role != RoleKeystore {
		t.Fatalf("corrupt keystore: %v", err)
	}
	if !src.Certificate().Leaf.Equal(second.Leaf) {
		t.Fatal("a failed reload replaced the keystore in service")
	}
}

func TestKeystoreRefusesMismatchAndMissingKey(t *testing.T) {
	ca := newTestCA(t, "keystore CA")
	dir := t.TempDir()
	a, b := ca.issue(t, serverTemplate()), ca.issue(t, serverTemplate())

	mismatch := filepath.Join(dir, "mismatch.pem")
	writeTestFile(t, mismatch, append(certPEM(a.Leaf), keyPEM(t, b.PrivateKey)...))
	var km *KeyMismatchError
	if _, err := NewKeystoreSource(mismatch, "", ""); !errors.As(err, &km) {
		t.Fatalf("mismatched PEM keystore: %v", err)
	}

	noKey := filepath.Join(dir, "nokey.pem")
	writeTestFile(t, noKey, certPEM(a.Leaf))
	var fe *FileError
	if _, err := NewKeystoreSource(noKey, "", ""); !errors.As(err, &fe) || fe.Role != RoleKeystore {
		t.Fatalf("PEM keystore without a key: %v", err)
	}

	empty := filepath.Join(dir, "nopass.p12")
	writeTestFile(t, empty, p12(t, ca, a.Leaf, a.PrivateKey, ""))
	src, err := NewKeystoreSource(empty, "", "")
	if err != nil {
		t.Fatalf("PKCS#12 keystore without a password: %v", err)
	}
	if !src.Certificate().Leaf.Equal(a.Leaf) {
		t.Fatal("wrong certificate")
	}
}

func TestKeystoreNamesJavaKeystores(t *testing.T) {
	dir := t.TempDir()
	for name, magic := range map[string][]byte{"jks": {0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2}, "jceks": {0xce, 0xce, 0xce, 0xce, 0, 0, 0, 2}} {
		path := filepath.Join(dir, name)
		writeTestFile(t, path, magic)
		if _, err := NewKeystoreSource(path, "changeit", ""); !errors.Is(err, ErrJavaKeystore) || !strings.Contains(err.Error(), "keytool -importkeystore") {
			t.Errorf("%s: %v", name, err)
		}
	}
}
