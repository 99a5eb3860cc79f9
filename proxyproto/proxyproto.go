// Package proxyproto encodes PROXY protocol headers, version 1 (a text line)
// and version 2 (binary, with TLVs), as specified by HAProxy in
// https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt. moat writes
// one as the first bytes on the upstream socket, so that the upstream sees
// the real client address and, in version 2, what TLS negotiated and who
// the client certificate names, without parsing TLS itself.
//
// Typical use, once the upstream connect completes:
//
//	hdr := proxyproto.ForConnection(2, clientAddr, localAddr, &connState)
//	// write hdr before any relayed plaintext
//
// or, field by field:
//
//	hdr := proxyproto.V2(src, dst,
//		proxyproto.ALPN("h2"), proxyproto.Authority("api.example.com"),
//		proxyproto.SSL(proxyproto.ClientSSL, 0, proxyproto.SSLVersion("TLSv1.3")))
//
// moat also receives headers, from load balancers it is told to trust
// (--accept-proxy-protocol): Parse reads one incrementally, from the bytes
// received so far on a non-blocking socket (receive.go).
package proxyproto

import (
	"encoding/binary"
	"net/netip"
	"strconv"
)

// signature opens every version 2 header; it cannot start a valid HTTP,
// TLS, SMTP or SSH exchange, so a misconfigured upstream fails at once.
var signature = [12]byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

// Version 2 command and family bytes (section 2.2).
const (
	cmdLocal = 0x20 // version 2, LOCAL: no relayed addresses
	cmdProxy = 0x21 // version 2, PROXY: addresses follow

	famUnspec    = 0x00
	famTCP4      = 0x11
	famTCP6      = 0x21
	addrLenTCP4  = 2*4 + 2*2
	addrLenTCP6  = 2*16 + 2*2
	maxHeaderLen = 0xFFFF // the 16-bit length field bounds addresses plus TLVs
)

// TLV types registered by the specification (section 2.2).
const (
	TypeALPN      byte = 0x01
	TypeAuthority byte = 0x02
	TypeCRC32C    byte = 0x03
	TypeNoop      byte = 0x04
	TypeUniqueID  byte = 0x05
	TypeSSL       byte = 0x20
	TypeNetNS     byte = 0x30
)

// Sub-TLV types carried inside a TypeSSL TLV (section 2.2.6).
const (
	SubtypeSSLVersion byte = 0x21
	SubtypeSSLCN      byte = 0x22
	SubtypeSSLCipher  byte = 0x23
	SubtypeSSLSigAlg  byte = 0x24
	SubtypeSSLKeyAlg  byte = 0x25
)

// TypeSPIFFEID carries the client certificate's SPIFFE ID (its spiffe://
// URI SAN) as a UTF-8 string. The specification registers no type for it;
// 0xE0–0xEF is the range it reserves for applications (section 2.2.8).
// 0xE4 avoids the values cloud load balancers already use there (Google
// 0xE0, AWS 0xEA, Azure 0xEE). It is a top-level TLV rather than an SSL
// sub-TLV because receivers such as Envoy's proxy_protocol filter and
// HAProxy's fc_pp_tlv() can extract top-level types by number only.
const TypeSPIFFEID byte = 0xE4

// TypeTLSGroup carries the key-exchange group the TLS handshake negotiated,
// by Go's name for it ("X25519MLKEM768", "X25519", "CurveP256"), so that the
// upstream can tell post-quantum sessions apart. TypeTLSResumed carries one
// byte: 1 when the handshake resumed an earlier session, 0 when it was a
// full one. Both are in the application range, beside TypeSPIFFEID.
const (
	TypeTLSGroup   byte = 0xE5
	TypeTLSResumed byte = 0xE6
)

// Client flags of a TypeSSL TLV (section 2.2.6).
const (
	ClientSSL      byte = 0x01 // the client connected over TLS
	ClientCertConn byte = 0x02 // it presented a certificate on this connection
	ClientCertSess byte = 0x04 // it presented one at least once in this TLS session
)

// TLV is one type-length-value entry of a version 2 header. Value must be
// under 64 KiB; V2 leaves out any TLV that does not fit the header.
type TLV struct {
	Type  byte
	Value []byte
}

// ALPN returns the TLV for the negotiated application protocol.
func ALPN(proto string) TLV { return TLV{TypeALPN, []byte(proto)} }

// Authority returns the TLV for the host name the client asked for (SNI).
func Authority(host string) TLV { return TLV{TypeAuthority, []byte(host)} }

// SPIFFEID returns the TypeSPIFFEID TLV.
func SPIFFEID(uri string) TLV { return TLV{TypeSPIFFEID, []byte(uri)} }

// TLSGroup returns the TypeTLSGroup TLV.
func TLSGroup(name string) TLV { return TLV{TypeTLSGroup, []byte(name)} }

// TLSResumed returns the TypeTLSResumed TLV.
func TLSResumed(resumed bool) TLV {
	if resumed {
		return TLV{TypeTLSResumed, []byte{1}}
	}
	return TLV{TypeTLSResumed, []byte{0}}
}

// SSLVersion, SSLCN and SSLCipher return sub-TLVs for SSL.
func SSLVersion(v string) TLV { return TLV{SubtypeSSLVersion, []byte(v)} }

// SSLCN returns the sub-TLV for the client certificate's subject CN.
func SSLCN(cn string) TLV { return TLV{SubtypeSSLCN, []byte(cn)} }

// SSLCipher returns the sub-TLV for the negotiated cipher suite's name.
func SSLCipher(name string) TLV { return TLV{SubtypeSSLCipher, []byte(name)} }

// SSL returns a TypeSSL TLV: the client flags, the verify result (0 when
// the client presented a certificate and it was verified, non-zero
// otherwise) and sub-TLVs.
func SSL(client byte, verify uint32, subs ...TLV) TLV {
	v := make([]byte, 5, 5+tlvsLen(subs))
	v[0] = client
	binary.BigEndian.PutUint32(v[1:], verify)
	for _, s := range subs {
		v = appendTLV(v, s)
	}
	return TLV{TypeSSL, v}
}

// V1 returns the version 1 text line for a TCP connection from src to dst:
// "PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n". When either address is
// not an IP (a unix socket), it returns "PROXY UNKNOWN\r\n", which tells the
// receiver to use the connection's own addresses; the specification
// discourages UNKNOWN, but there is no address to put in its place.
func V1(src, dst netip.AddrPort) []byte {
	src, dst, ok := sameFamily(src, dst)
	if !ok {
		return []byte("PROXY UNKNOWN\r\n")
	}
	proto := "TCP4"
	if src.Addr().Is6() {
		proto = "TCP6"
	}
	b := make([]byte, 0, 108) // the specification's bound on a v1 line
	b = append(b, "PROXY "+proto+" "...)
	b = appendV1Addr(b, src.Addr())
	b = append(b, ' ')
	b = appendV1Addr(b, dst.Addr())
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(src.Port()), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(dst.Port()), 10)
	return append(b, '\r', '\n')
}

// appendV1Addr writes an address in the form the specification allows:
// IPv6 as hexadecimal groups only, so an IPv4 address mapped into IPv6
// (one side of a mixed-family pair) is written expanded rather than as
// Go's "::ffff:192.0.2.1", whose dotted tail strict receivers reject.
func appendV1Addr(b []byte, a netip.Addr) []byte {
	if a.Is4In6() {
		return append(b, a.StringExpanded()...)
	}
	return a.AppendTo(b)
}

// V2 returns a version 2 header for a TCP connection from src to dst,
// followed by tlvs. When either address is not an IP (a unix socket), it
// returns the LOCAL form with no addresses, as HAProxy does: the receiver
// uses the connection's own endpoints, and still gets the TLVs.
func V2(src, dst netip.AddrPort, tlvs ...TLV) []byte {
	src, dst, ok := sameFamily(src, dst)
	if !ok {
		return V2Local(tlvs...)
	}
	fam, addrLen := byte(famTCP4), addrLenTCP4
	if src.Addr().Is6() {
		fam, addrLen = famTCP6, addrLenTCP6
	}
	b := header(cmdProxy, fam, addrLen, tlvs)
	b = append(b, src.Addr().AsSlice()...)
	b = append(b, dst.Addr().AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, src.Port())
	b = binary.BigEndian.AppendUint16(b, dst.Port())
	return finish(b, addrLen, tlvs)
}

// V2Local returns a version 2 header with the LOCAL command and the
// unspecified family: no addresses, only tlvs.
func V2Local(tlvs ...TLV) []byte {
	return finish(header(cmdLocal, famUnspec, 0, tlvs), 0, tlvs)
}

// header starts a version 2 header; finish appends the TLVs that fit and
// writes the length.
func header(cmd, fam byte, addrLen int, tlvs []TLV) []byte {
	b := make([]byte, 16, 16+addrLen+tlvsLen(tlvs))
	copy(b, signature[:])
	b[12], b[13] = cmd, fam
	return b
}

func finish(b []byte, addrLen int, tlvs []TLV) []byte {
	n := addrLen
	for _, t := range tlvs {
		if n+3+len(t.Value) > maxHeaderLen {
			continue // cannot be expressed; leaving it out keeps the header valid
		}
		b = appendTLV(b, t)
		n += 3 + len(t.Value)
	}
	binary.BigEndian.PutUint16(b[14:16], uint16(n))
	return b
}

func appendTLV(b []byte, t TLV) []byte {
	v := t.Value
	if len(v) > 0xFFFF {
		v = v[:0xFFFF]
	}
	b = append(b, t.Type)
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

func tlvsLen(tlvs []TLV) int {
	n := 0
	for _, t := range tlvs {
		n += 3 + len(t.Value)
	}
	return n
}

// sameFamily unmaps IPv4-mapped addresses and, when one side is IPv4 and
// the other IPv6, maps the IPv4 one into IPv6: a header has one family.
func sameFamily(src, dst netip.AddrPort) (netip.AddrPort, netip.AddrPort, bool) {
	if !src.IsValid() || !dst.IsValid() {
		return src, dst, false
	}
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	if s.Is4() != d.Is4() {
		s, d = netip.AddrFrom16(s.As16()), netip.AddrFrom16(d.As16())
	}
	return netip.AddrPortFrom(s, src.Port()), netip.AddrPortFrom(d, dst.Port()), true
}
