package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"fmt"

	"software.sslmate.com/src/go-pkcs12"
)

// keystore is how a Source reads a keystore file: the certificate chain
// and its private key in one file, as ghostunnel's --keystore takes them.
type keystore struct {
	password string // for PKCS#12; "" for none
}

// NewKeystoreSource loads a keystore, reloaded like NewFileSource's files:
// either PEM (the chain, leaf first, and the private key, in any order) or
// PKCS#12 (.p12/.pfx, decrypted with password; "" for none), with a CA
// bundle when caFile is not "". The format is told by the content, not
// the name, so a reload may switch between them.
func NewKeystoreSource(path, password, caFile string) (*Source, error) {
	if path == "" {
		return nil, errors.New("no keystore given")
	}
	return load(&Source{certFile: path, caFile: caFile, keystore: &keystore{password: password}})
}

// ErrKeystorePassword is wrapped by the error for a PKCS#12 keystore that
// does not open with the password given.
var ErrKeystorePassword = errors.New("wrong password, or no password given for an encrypted keystore")

// ErrJavaKeystore is the error for a JKS or JCEKS keystore, which moat does
// not read (ghostunnel does): PKCS#12 is what Java itself writes by default
// since Java 9.
var ErrJavaKeystore = errors.New("a Java keystore (JKS/JCEKS), which moat does not read; convert it: keytool -importkeystore -srckeystore FILE -destkeystore FILE.p12 -deststoretype pkcs12")

// isJavaKeystore tells JKS (magic FEEDFEED) and JCEKS (CECECECE) files.
func isJavaKeystore(data []byte) bool {
	return bytes.HasPrefix(data, []byte{0xfe, 0xed, 0xfe, 0xed}) || bytes.HasPrefix(data, []byte{0xce, 0xce, 0xce, 0xce})
}

// parse reads one keystore's bytes. Errors name the file and never carry
// key material or the password.
func (k *keystore) parse(path string, data []byte) (*tls.Certificate, error) {
	if bytes.Contains(data, []byte("-----BEGIN ")) {
		cert, err := parseKeyPair(path, data, path, data)
		var fe *FileError
		if errors.As(err, &fe) {
			fe.Role = RoleKeystore
		}
		return cert, err
	}
	if isJavaKeystore(data) {
		return nil, &FileError{Role: RoleKeystore, Path: path, Err: ErrJavaKeystore}
	}
	key, leaf, chain, err := pkcs12.DecodeChain(data, k.password)
	if err != nil {
		if errors.Is(err, pkcs12.ErrIncorrectPassword) {
			err = ErrKeystorePassword
		} else {
			err = fmt.Errorf("neither PEM nor a PKCS#12 keystore moat can read: %w", err)
		}
		return nil, &FileError{Role: RoleKeystore, Path: path, Err: err}
	}
	signer, ok := key.(crypto.Signer)
	switch key.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
	default:
		ok = false
	}
	if !ok {
		return nil, &FileError{Role: RoleKeystore, Path: path, Err: fmt.Errorf("unsupported private key type %T", key)}
	}
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(signer.Public()) {
		return nil, &KeyMismatchError{CertFile: path, KeyFile: path}
	}
	cert := &tls.Certificate{PrivateKey: signer, Leaf: leaf, Certificate: [][]byte{leaf.Raw}}
	for _, c := range chain { // served as given, like a PEM chain
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert, nil
}
