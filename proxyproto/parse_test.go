package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// This file is a receiver written from the specification alone
// (proxy-protocol.txt, sections 2.1 and 2.2), not from the encoder, so that
// the tests check the encoder against the document rather than against
// itself. It is strict: anything the document says a receiver must reject
// is an error.

// received is what a receiver learns from a PROXY header.
type received struct {
	version  int
	local    bool   // v2 LOCAL command, or v1 UNKNOWN: use the real endpoints
	family   string // "TCP4", "TCP6", "UNSPEC", "UNKNOWN"
	src, dst netip.AddrPort
	tlvs     []TLV // top level, in order
}

// ssl is a decoded PP2_TYPE_SSL value.
type ssl struct {
	client byte
	verify uint32
	subs   []TLV
}

var v2sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// parse reads one header from the start of b and returns the bytes after it.
func parse(b []byte) (received, []byte, error) {
	if len(b) >= 16 && bytes.Equal(b[:12], v2sig) && b[12]&0xF0 == 0x20 {
		return parseV2(b)
	}
	if len(b) >= 8 && string(b[:5]) == "PROXY" {
		return parseV1(b)
	}
	return received{}, nil, errors.New("not a PROXY protocol header")
}

func parseV1(b []byte) (received, []byte, error) {
	end := bytes.Index(b[:min(len(b), 107)], []byte("\r\n"))
	if end < 0 {
		return received{}, nil, errors.New("v1: no CRLF in the first 107 bytes")
	}
	line, rest := string(b[:end]), b[end+2:]
	if strings.ContainsAny(line, "\r\n") {
		return received{}, nil, errors.New("v1: lone CR or LF")
	}
	f := strings.Split(line, " ") // exactly one space between fields
	h := received{version: 1}
	if len(f) >= 2 && f[0] == "PROXY" && f[1] == "UNKNOWN" {
		h.local, h.family = true, "UNKNOWN" // the rest of the line is ignored
		return h, rest, nil
	}
	if len(f) != 6 || f[0] != "PROXY" || (f[1] != "TCP4" && f[1] != "TCP6") {
		return received{}, nil, fmt.Errorf("v1: malformed line %q", line)
	}
	h.family = f[1]
	var err error
	if h.src, err = v1AddrPort(f[1], f[2], f[4]); err != nil {
		return received{}, nil, err
	}
	if h.dst, err = v1AddrPort(f[1], f[3], f[5]); err != nil {
		return received{}, nil, err
	}
	return h, rest, nil
}

func v1AddrPort(family, addr, port string) (netip.AddrPort, error) {
	a, err := netip.ParseAddr(addr) // rejects leading zeros in IPv4
	if err != nil || a.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("v1: bad address %q", addr)
	}
	if family == "TCP4" && !a.Is4() {
		return netip.AddrPort{}, fmt.Errorf("v1: %q is not IPv4", addr)
	}
	if family == "TCP6" && (!a.Is6() || strings.Contains(addr, ".")) {
		return netip.AddrPort{}, fmt.Errorf("v1: %q is not IPv6 in hexadecimal groups", addr)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || strconv.FormatUint(p, 10) != port { // no heading zeros, no sign
		return netip.AddrPort{}, fmt.Errorf("v1: bad port %q", port)
	}
	return netip.AddrPortFrom(a, uint16(p)), nil
}

func parseV2(b []byte) (received, []byte, error) {
	h := received{version: 2}
	switch b[12] & 0x0F {
	case 0x0:
		h.local = true
	case 0x1:
	default:
		return received{}, nil, fmt.Errorf("v2: unassigned command %#x", b[12]&0x0F)
	}
	n := int(binary.BigEndian.Uint16(b[14:16]))
	if len(b) < 16+n {
		return received{}, nil, errors.New("v2: partial header")
	}
	body, rest := b[16:16+n], b[16+n:]
	var addrLen int
	switch b[13] {
	case 0x00:
		h.family = "UNSPEC"
	case 0x11:
		h.family, addrLen = "TCP4", 12
	case 0x21:
		h.family, addrLen = "TCP6", 36
	default:
		return received{}, nil, fmt.Errorf("v2: family/protocol %#x not expected from moat", b[13])
	}
	if len(body) < addrLen {
		return received{}, nil, errors.New("v2: address block longer than the header")
	}
	if addrLen > 0 {
		al := addrLen/2 - 2
		src, _ := netip.AddrFromSlice(body[:al])
		dst, _ := netip.AddrFromSlice(body[al : 2*al])
		h.src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[2*al:]))
		h.dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[2*al+2:]))
	}
	tlvs, err := parseTLVs(body[addrLen:])
	if err != nil {
		return received{}, nil, err
	}
	h.tlvs = tlvs
	return h, rest, nil
}

// parseTLVs splits a run of TLVs: type, 16-bit big-endian length, value.
func parseTLVs(b []byte) ([]TLV, error) {
	var out []TLV
	for len(b) > 0 {
		if len(b) < 3 {
			return nil, errors.New("v2: truncated TLV header")
		}
		n := int(binary.BigEndian.Uint16(b[1:3]))
		if len(b) < 3+n {
			return nil, fmt.Errorf("v2: TLV %#x claims %d bytes, %d left", b[0], n, len(b)-3)
		}
		out = append(out, TLV{Type: b[0], Value: b[3 : 3+n]})
		b = b[3+n:]
	}
	return out, nil
}

// parseSSL decodes a PP2_TYPE_SSL value: client (1 byte), verify (4 bytes,
// big-endian), then sub-TLVs in the same TLV format.
func parseSSL(v []byte) (ssl, error) {
	if len(v) < 5 {
		return ssl{}, errors.New("SSL TLV shorter than 5 bytes")
	}
	subs, err := parseTLVs(v[5:])
	return ssl{client: v[0], verify: binary.BigEndian.Uint32(v[1:5]), subs: subs}, err
}

// find returns the value of the first TLV of type t.
func find(tlvs []TLV, t byte) (string, bool) {
	for _, x := range tlvs {
		if x.Type == t {
			return string(x.Value), true
		}
	}
	return "", false
}
