package certs

import (
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"strings"
)

// Several certificates on one listener: a Source may serve more than one
// key pair (AddKeyPairs), and each handshake gets the one whose names
// cover the server name (SNI) the client sent:
//
//  1. a pair with a SAN equal to the name (DNS names compared without case
//     and without a trailing dot; IP literals as addresses);
//  2. else a pair whose wildcard SAN covers it, by x509's VerifyHostname
//     rules ("*.example.com" covers "a.example.com", not "a.b.example.com"
//     nor "example.com");
//  3. else, and for a client that sends no SNI, the first pair: the
//     default.
//
// Within a step, pairs are tried in the order given, and a pair the client
// cannot use (an ECDSA certificate for a client offering only RSA
// signatures, say) gives way to a later one that covers the name as well,
// so an RSA and an ECDSA pair for the same names serve both kinds of
// client.

// pickCertificate chooses among pairs (pairs[0] is the default) for hello.
func pickCertificate(hello *tls.ClientHelloInfo, pairs []*tls.Certificate) *tls.Certificate {
	if len(pairs) == 1 || hello.ServerName == "" {
		return pairs[0]
	}
	name := normalName(hello.ServerName)
	var exact, wild []*tls.Certificate
	for _, c := range pairs {
		switch coverage(c.Leaf, name) {
		case coversExactly:
			exact = append(exact, c)
		case coversByWildcard:
			wild = append(wild, c)
		}
	}
	for _, found := range [][]*tls.Certificate{exact, wild} {
		if len(found) == 0 {
			continue
		}
		for _, c := range found {
			if hello.SupportsCertificate(c) == nil {
				return c
			}
		}
		return found[0] // none suits the client: the handshake says why
	}
	return pairs[0]
}

// cover is how a certificate covers a server name.
type cover int

const (
	coversNot cover = iota
	coversByWildcard
	coversExactly
)

// normalName is a server name as pickCertificate compares it.
func normalName(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, "."))
}

// coverage says how leaf covers name (already normalName'd).
func coverage(leaf *x509.Certificate, name string) cover {
	if leaf == nil {
		return coversNot
	}
	if ip, err := netip.ParseAddr(name); err == nil {
		for _, a := range leaf.IPAddresses {
			if b, ok := netip.AddrFromSlice(a); ok && b.Unmap() == ip.Unmap() {
				return coversExactly
			}
		}
		return coversNot
	}
	for _, d := range leaf.DNSNames {
		if normalName(d) == name {
			return coversExactly
		}
	}
	if leaf.VerifyHostname(name) == nil {
		return coversByWildcard
	}
	return coversNot
}
