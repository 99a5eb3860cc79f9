package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Receiving. moat accepts a header only from the load balancers it is told
// to trust, before any TLS byte, on a non-blocking socket: the bytes arrive
// in pieces, and Parse is called again on everything received so far until
// it has a whole header. Parse never consumes anything it has not
// accepted and keeps no state between calls, so the caller needs only a
// buffer of MaxHeaderLen bytes per connection. A v2 header parses without
// allocating (about 60 ns); a v1 line allocates its two address strings
// (about 220 ns).
//
//	h, n, err := proxyproto.Parse(buf)
//	switch {
//	case errors.Is(err, proxyproto.ErrIncomplete): // read more, call again
//	case err != nil: // close the connection
//	default: // buf[n:] is the start of the TLS stream; h.Source the client
//	}

// Bounds on a received header. A version 1 line is at most 107 bytes with
// its CRLF (the specification's own bound). A version 2 header is 16 bytes
// and then the length its 16-bit field gives, which moat bounds at
// MaxV2Length: room for the largest address block the specification
// defines (two unix paths, 216 bytes) or an IPv6 pair (36 bytes) with 196
// bytes of TLVs, which is more than the cloud load balancers send (AWS
// NLB's VPC endpoint ID, Azure's link ID, GCP's PSC connection ID are a
// few dozen bytes). A longer header is refused rather than buffered.
const (
	MaxV1Len     = 107
	MaxV2Length  = 232
	MaxHeaderLen = 16 + MaxV2Length
)

// Errors Parse returns. Anything but ErrIncomplete is final: the bytes
// cannot become a valid header, and the connection should be closed.
var (
	// ErrIncomplete: the bytes so far are a valid beginning; read more.
	ErrIncomplete = errors.New("PROXY header incomplete")
	// ErrNotHeader: the bytes do not begin a PROXY header at all (a TLS
	// ClientHello, for one, starts with 0x16).
	ErrNotHeader = errors.New("not a PROXY protocol header")
	// ErrTooLong: a version 1 line without CRLF within MaxV1Len bytes, or a
	// version 2 length over MaxV2Length.
	ErrTooLong = errors.New("PROXY header too long")
	// ErrMalformed: a header that breaks the specification: bad syntax, an
	// unknown version, command, family or protocol, addresses that do not
	// fit the length, broken TLV framing.
	ErrMalformed = errors.New("malformed PROXY header")
)

// Header is what a received header says.
type Header struct {
	Version int // 1 or 2
	// Local is true for a version 2 LOCAL command (the proxy's own health
	// check), a version 1 UNKNOWN line, and a version 2 PROXY header whose
	// family carries no TCP address (UNSPEC, AF_UNIX): the connection's
	// own addresses stand.
	Local bool
	// Source is the client's address and port, Dest the address it
	// connected to; both valid when Local is false.
	Source, Dest netip.AddrPort
}

// Parse reads one header from the start of b. It returns the header and
// the number of bytes it took; ErrIncomplete when b is a valid but
// unfinished beginning; or a final error. A header is recognised by its
// first byte ('P' for version 1, CR for version 2's signature), and each
// byte is checked as it arrives, so garbage is refused at once rather than
// at a timeout.
func Parse(b []byte) (Header, int, error) {
	switch {
	case len(b) == 0:
		return Header{}, 0, ErrIncomplete
	case b[0] == 'P':
		return receiveV1(b)
	case b[0] == signature[0]:
		return receiveV2(b)
	}
	return Header{}, 0, ErrNotHeader
}

// LooksLikeHeader reports whether b, the first bytes received on a
// connection, begin a PROXY header rather than anything a TLS client
// sends (whose first byte is a record type, 20 to 24).
func LooksLikeHeader(b []byte) bool {
	_, _, err := Parse(b)
	return err == nil || errors.Is(err, ErrIncomplete)
}

var v1Prefix = []byte("PROXY ")

func receiveV1(b []byte) (Header, int, error) {
	if k := min(len(b), len(v1Prefix)); !bytes.Equal(b[:k], v1Prefix[:k]) {
		return Header{}, 0, ErrNotHeader
	}
	window := b[:min(len(b), MaxV1Len)]
	end := bytes.IndexByte(window, '\n')
	if end < 0 {
		if i := bytes.IndexByte(window, '\r'); i >= 0 && i < len(window)-1 {
			return Header{}, 0, fmt.Errorf("%w: version 1: CR not followed by LF", ErrMalformed)
		}
		if len(b) >= MaxV1Len {
			return Header{}, 0, fmt.Errorf("%w: version 1: no CRLF within %d bytes", ErrTooLong, MaxV1Len)
		}
		return Header{}, 0, ErrIncomplete
	}
	if end == 0 || window[end-1] != '\r' {
		return Header{}, 0, fmt.Errorf("%w: version 1: LF without CR", ErrMalformed)
	}
	if bytes.IndexByte(window[:end-1], '\r') >= 0 {
		// A CR inside the line, as a header cut short of it is refused:
		// the same bytes decide the same however they arrive.
		return Header{}, 0, fmt.Errorf("%w: version 1: CR not followed by LF", ErrMalformed)
	}
	h, err := v1Line(window[:end-1])
	if err != nil {
		return Header{}, 0, err
	}
	return h, end + 1, nil
}

// v1Line parses "PROXY TCP4 src dst sport dport" (CRLF stripped), fields
// separated by exactly one space, or "PROXY UNKNOWN" followed by anything.
func v1Line(line []byte) (Header, error) {
	h := Header{Version: 1}
	var f [7][]byte
	n := 0
	for rest := line; ; n++ {
		if n == len(f) {
			return h, fmt.Errorf("%w: version 1: too many fields", ErrMalformed)
		}
		i := bytes.IndexByte(rest, ' ')
		if i < 0 {
			f[n] = rest
			n++
			break
		}
		f[n], rest = rest[:i], rest[i+1:]
	}
	if n >= 2 && string(f[1]) == "UNKNOWN" {
		h.Local = true
		return h, nil
	}
	if n != 6 {
		return h, fmt.Errorf("%w: version 1: %d fields, want 6", ErrMalformed, n)
	}
	var want4 bool
	switch string(f[1]) {
	case "TCP4":
		want4 = true
	case "TCP6":
	default:
		return h, fmt.Errorf("%w: version 1: unknown protocol %q", ErrMalformed, f[1])
	}
	src, err1 := v1Addr(f[2], f[4], want4)
	dst, err2 := v1Addr(f[3], f[5], want4)
	if err := errors.Join(err1, err2); err != nil {
		return h, err
	}
	h.Source, h.Dest = src, dst
	return h, nil
}

func v1Addr(ip, port []byte, want4 bool) (netip.AddrPort, error) {
	a, err := netip.ParseAddr(string(ip))
	if err != nil || a.Is4() != want4 || a.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("%w: version 1: bad address %q", ErrMalformed, ip)
	}
	p, ok := v1Port(port)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%w: version 1: bad port %q", ErrMalformed, port)
	}
	return netip.AddrPortFrom(a, p), nil
}

// v1Port parses a decimal port without sign or leading zero.
func v1Port(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 || (b[0] == '0' && len(b) > 1) {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return uint16(n), n <= 0xFFFF
}

// Version 2 families (the high nibble of byte 13) and protocols (the low).
const (
	afUnspec = 0x0
	afInet   = 0x1
	afInet6  = 0x2
	afUnix   = 0x3

	protoUnspec = 0x0
	protoStream = 0x1
	protoDgram  = 0x2

	addrLenUnix = 2 * 108 // two sun_path fields
)

func receiveV2(b []byte) (Header, int, error) {
	if k := min(len(b), len(signature)); !bytes.Equal(b[:k], signature[:k]) {
		return Header{}, 0, ErrNotHeader
	}
	if len(b) < 16 {
		return Header{}, 0, ErrIncomplete
	}
	h := Header{Version: 2}
	if v := b[12] >> 4; v != 2 {
		return h, 0, fmt.Errorf("%w: version 2: version nibble %d", ErrMalformed, v)
	}
	cmd, af, proto := b[12]&0x0F, b[13]>>4, b[13]&0x0F
	switch {
	case cmd > 1:
		return h, 0, fmt.Errorf("%w: version 2: unknown command %#x", ErrMalformed, cmd)
	case af > afUnix || proto > protoDgram:
		return h, 0, fmt.Errorf("%w: version 2: unknown family and protocol %#02x", ErrMalformed, b[13])
	}
	length := int(binary.BigEndian.Uint16(b[14:16]))
	if length > MaxV2Length {
		return h, 0, fmt.Errorf("%w: version 2: length %d over %d", ErrTooLong, length, MaxV2Length)
	}
	if len(b) < 16+length {
		return h, 0, ErrIncomplete
	}
	body := b[16 : 16+length]
	addrLen := 0
	switch af {
	case afInet:
		addrLen = addrLenTCP4
	case afInet6:
		addrLen = addrLenTCP6
	case afUnix:
		addrLen = addrLenUnix
	}
	if len(body) < addrLen {
		return h, 0, fmt.Errorf("%w: version 2: %d bytes cannot hold the addresses of family %#x", ErrMalformed, len(body), af)
	}
	if err := checkTLVs(body[addrLen:]); err != nil {
		return h, 0, err
	}
	switch {
	case cmd == 0 || af == afUnspec || af == afUnix:
		h.Local = true // LOCAL, or nothing moat can use as a TCP client's address
	case proto != protoStream:
		return h, 0, fmt.Errorf("%w: version 2: not a stream (protocol %#x)", ErrMalformed, proto)
	case af == afInet:
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:10]))
		h.Dest = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[4:8])), binary.BigEndian.Uint16(body[10:12]))
	default:
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])), binary.BigEndian.Uint16(body[32:34]))
		h.Dest = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[16:32])), binary.BigEndian.Uint16(body[34:36]))
	}
	return h, 16 + length, nil
}

// checkTLVs checks that the TLVs after the addresses are framed right:
// each one's length stays inside the header. Their values are not used.
func checkTLVs(b []byte) error {
	for len(b) > 0 {
		if len(b) < 3 {
			return fmt.Errorf("%w: version 2: %d stray bytes after the last TLV", ErrMalformed, len(b))
		}
		n := 3 + int(binary.BigEndian.Uint16(b[1:3]))
		if n > len(b) {
			return fmt.Errorf("%w: version 2: TLV %#02x runs past the header", ErrMalformed, b[0])
		}
		b = b[n:]
	}
	return nil
}
