package certs

import (
	"errors"
	"fmt"
)

// FileRole is the part a file plays: a certificate chain, its key, or a CA
// bundle. Errors carry it so that a caller can say which of its own
// settings gave the file, without reading the message.
type FileRole int

// The roles a file plays.
const (
	RoleCertificate FileRole = iota + 1 // a PEM certificate chain, leaf first
	RoleKey                             // the private key of a certificate
	RoleCABundle                        // the CAs a peer's certificate must chain to
	RoleCRL                             // a certificate revocation list (PEM or DER)
	RoleKeystore                        // a certificate chain and its key in one file (PEM or PKCS#12)
)

var fileRoleNames = [...]string{RoleCertificate: "certificate", RoleKey: "key", RoleCABundle: "CA bundle", RoleCRL: "CRL", RoleKeystore: "keystore"}

func (r FileRole) String() string {
	if r > 0 && int(r) < len(fileRoleNames) {
		return fileRoleNames[r]
	}
	return fmt.Sprintf("FileRole(%d)", int(r))
}

// FileError reports a file that could not be read or parsed, and its role.
// It reads "<role> <path>: <reason>".
type FileError struct {
	Role FileRole
	Path string
	Err  error
}

func (e *FileError) Error() string { return e.Role.String() + " " + e.Path + ": " + e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// KeyMismatchError reports a certificate and a key that each parse but do
// not belong together.
type KeyMismatchError struct {
	CertFile, KeyFile string
}

func (e *KeyMismatchError) Error() string {
	return fmt.Sprintf("certificate %s and key %s do not match", e.CertFile, e.KeyFile)
}

// PolicyRule names a kind of rule in a Policy, after its field.
type PolicyRule int

// The rules a PolicyError can blame.
const (
	RuleURIs     PolicyRule = iota + 1 // Policy.URIs
	RuleAllowAll                       // Policy.AllowAll
)

var policyRuleNames = [...]string{RuleURIs: "URIs", RuleAllowAll: "AllowAll"}

func (r PolicyRule) String() string {
	if r > 0 && int(r) < len(policyRuleNames) {
		return policyRuleNames[r]
	}
	return fmt.Sprintf("PolicyRule(%d)", int(r))
}

// PolicyError says which rule makes a Policy unusable, and why.
type PolicyError struct {
	Rule PolicyRule
	Err  error
}

func (e *PolicyError) Error() string { return "policy " + e.Rule.String() + ": " + e.Err.Error() }
func (e *PolicyError) Unwrap() error { return e.Err }

// ErrAllowAllWithRules is a PolicyError's Err when AllowAll stands next to
// rules that name clients: they would look like a restriction while every
// client of the CA is let in.
var ErrAllowAllWithRules = errors.New("admits every client of the CA, so it cannot be combined with rules that name clients")
