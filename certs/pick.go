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

// sniIndex finds the pairs covering a name without walking every SAN of
// every pair at each handshake. It is built from one generation of each
// pair's material and rebuilt when any of them reloads.
type sniIndex struct {
	gen   []*material        // each pair's material it was built from, the default first
	certs []*tls.Certificate // the same pairs' certificates
	exact map[string][]int   // normalName of a DNS SAN, or an IP SAN: pairs in order
	wild  map[string][]int   // "example.com" for a SAN "*.example.com": pairs in order
}

// index returns the sniIndex of the material now in service.
func (s *Source) index() *sniIndex {
	if idx := s.sni.Load(); idx != nil && idx.current(s) {
		return idx
	}
	idx := newSNIIndex(s)
	s.sni.Store(idx)
	return idx
}

// current reports whether idx was built from the material s serves now.
func (idx *sniIndex) current(s *Source) bool {
	if idx.gen[0] != s.current.Load() {
		return false
	}
	for i, p := range s.more {
		if idx.gen[i+1] != p.current.Load() {
			return false
		}
	}
	return true
}

func newSNIIndex(s *Source) *sniIndex {
	idx := &sniIndex{exact: map[string][]int{}, wild: map[string][]int{}}
	for _, src := range append([]*Source{s}, s.more...) {
		m := src.current.Load()
		idx.gen = append(idx.gen, m)
		idx.certs = append(idx.certs, m.cert)
		i := len(idx.certs) - 1
		for _, name := range serverNames(m.cert.Leaf) {
			if suffix, ok := strings.CutPrefix(name, "*."); ok {
				idx.wild[suffix] = appendOnce(idx.wild[suffix], i)
			} else {
				idx.exact[name] = appendOnce(idx.exact[name], i)
			}
		}
	}
	return idx
}

// mayBeIP is a cheap test that spares a host name the parse: an IPv6
// literal has a colon, an IPv4 one ends in a digit, and no top-level
// domain does.
func mayBeIP(name string) bool {
	last := name[len(name)-1]
	return strings.IndexByte(name, ':') >= 0 || '0' <= last && last <= '9'
}

func appendOnce(list []int, i int) []int {
	if n := len(list); n > 0 && list[n-1] == i {
		return list
	}
	return append(list, i)
}

// pick chooses the certificate for hello (see the rules above).
func (idx *sniIndex) pick(hello *tls.ClientHelloInfo) *tls.Certificate {
	if hello.ServerName == "" {
		return idx.certs[0]
	}
	name := normalName(hello.ServerName)
	if mayBeIP(name) {
		if ip, err := netip.ParseAddr(name); err == nil {
			name = ip.Unmap().String()
		}
	}
	found := idx.exact[name]
	if dot := strings.IndexByte(name, '.'); len(found) == 0 && dot > 0 {
		found = idx.wild[name[dot+1:]]
	}
	switch len(found) {
	case 0:
		return idx.certs[0]
	case 1:
		return idx.certs[found[0]]
	}
	for _, i := range found {
		if hello.SupportsCertificate(idx.certs[i]) == nil {
			return idx.certs[i]
		}
	}
	return idx.certs[found[0]] // none suits the client: the handshake says why
}

// cover is how a certificate covers a server name.
type cover int

const (
	coversNot cover = iota
	coversByWildcard
	coversExactly
)

// normalName is a server name as sniIndex and coverage compare it.
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
		if strings.EqualFold(strings.TrimSuffix(d, "."), name) {
			return coversExactly
		}
	}
	if leaf.VerifyHostname(name) == nil {
		return coversByWildcard
	}
	return coversNot
}
