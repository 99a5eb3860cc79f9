package proxyproto

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	pp "github.com/pires/go-proxyproto"
)

// FuzzHeaderRoundTrip encodes a header from fuzzed addresses, ports and
// TLVs, and reads it back with pires/go-proxyproto and with parse_test.go's
// receiver. Both must accept it and see what was sent: the addresses after
// sameFamily's documented mapping (or UNKNOWN/LOCAL when one is not an IP),
// and, in version 2, every TLV that fits the 16-bit length, in order.
func FuzzHeaderRoundTrip(f *testing.F) {
	v4a, v4b := []byte{192, 0, 2, 1}, []byte{198, 51, 100, 2}
	v6a := netip.MustParseAddr("2001:db8::1").AsSlice()
	mapped := netip.MustParseAddr("::ffff:10.0.0.7").AsSlice()
	f.Add(byte(2), v4a, v4b, uint16(56324), uint16(443), []byte{TypeALPN, 0, 2, 'h', '2', TypeAuthority, 0, 3, 'a', '.', 'b'})
	f.Add(byte(2), v6a, v4b, uint16(0), uint16(65535), []byte{TypeSPIFFEID, 0, 8, 's', 'p', 'i', 'f', 'f', 'e', ':', '/'})
	f.Add(byte(2), mapped, v4b, uint16(1), uint16(2), []byte{TypeSSL, 0, 12, ClientSSL, 0, 0, 0, 0, SubtypeSSLCN, 0, 3, 'w', 'e', 'b', SubtypeSSLVersion})
	f.Add(byte(2), []byte{}, v4b, uint16(1), uint16(2), []byte{TypeNoop, 0, 0})
	f.Add(byte(2), v4a, v4b, uint16(1), uint16(2), []byte{TypeUniqueID, 0xFF, 0xF4, 'x', TypeALPN, 0, 1, 'y'})
	f.Add(byte(1), v4a, v6a, uint16(1234), uint16(443), []byte{})
	f.Add(byte(1), mapped, v4b, uint16(1234), uint16(443), []byte{})
	f.Add(byte(1), v4a, []byte{1, 2, 3}, uint16(1234), uint16(443), []byte{})

	// The specification allows 64 KiB; pires defaults to 4 KiB.
	defer func(n uint16) { pp.MaxV2HeaderSize = n }(pp.MaxV2HeaderSize)
	pp.MaxV2HeaderSize = 0xFFFF

	f.Fuzz(func(t *testing.T, version byte, srcIP, dstIP []byte, srcPort, dstPort uint16, rawTLVs []byte) {
		src, dst := fuzzAddrPort(srcIP, srcPort), fuzzAddrPort(dstIP, dstPort)
		tlvs := fuzzTLVs(rawTLVs)
		var hdr []byte
		if version == 1 {
			hdr = V1(src, dst)
		} else {
			hdr = V2(src, dst, tlvs...)
		}
		wantSrc, wantDst, proxied := expectedAddrs(src, dst)

		ph, rest, err := piresRead(append(hdr, payload...))
		if err != nil {
			t.Fatalf("pires refuses % x: %v", hdr, err)
		}
		if !bytes.Equal(rest, payload) {
			t.Fatalf("pires: after the header % x: %q", hdr, rest)
		}
		mh, rest, err := parse(append(hdr, payload...))
		if err != nil {
			t.Fatalf("parse refuses % x: %v", hdr, err)
		}
		if !bytes.Equal(rest, payload) {
			t.Fatalf("parse: after the header % x: %q", hdr, rest)
		}
		if !proxied {
			if ph.TransportProtocol != pp.UNSPEC || !mh.local {
				t.Fatalf("no IP address, yet pires reads %v and parse local=%v", ph.TransportProtocol, mh.local)
			}
		} else {
			ps, pd := piresAddr(ph.SourceAddr), piresAddr(ph.DestinationAddr)
			if ph.Command != pp.PROXY || ps != wantSrc || pd != wantDst {
				t.Fatalf("pires: %v %s → %s, sent %s → %s, want %s → %s", ph.Command, ps, pd, src, dst, wantSrc, wantDst)
			}
			if mh.local || mh.src != wantSrc || mh.dst != wantDst {
				t.Fatalf("parse: %+v, want %s → %s", mh, wantSrc, wantDst)
			}
		}
		if version == 1 {
			return
		}
		want := fittingTLVs(wantSrc, proxied, tlvs)
		got, err := ph.TLVs()
		if err != nil || len(got) != len(want) || len(mh.tlvs) != len(want) {
			t.Fatalf("pires: %d TLVs (%v), parse: %d; want %d", len(got), err, len(mh.tlvs), len(want))
		}
		for i, w := range want {
			// pires keeps a NOOP's type but not its value.
			if byte(got[i].Type) != w.Type || (w.Type != TypeNoop && !bytes.Equal(got[i].Value, w.Value)) {
				t.Fatalf("pires: TLV %d = %#x (%d bytes), sent %#x (%d bytes)", i, got[i].Type, len(got[i].Value), w.Type, len(w.Value))
			}
			if mh.tlvs[i].Type != w.Type || !bytes.Equal(mh.tlvs[i].Value, w.Value) {
				t.Fatalf("parse: TLV %d = %#x (%d bytes), sent %#x (%d bytes)", i, mh.tlvs[i].Type, len(mh.tlvs[i].Value), w.Type, len(w.Value))
			}
		}
	})
}

// fuzzAddrPort takes 4 or 16 bytes as an address; anything else stands for
// a unix socket, which has no IP.
func fuzzAddrPort(ip []byte, port uint16) netip.AddrPort {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a, port)
}

// expectedAddrs is what a receiver should see for src and dst: both IPv4
// once IPv4-mapped addresses are unmapped, or else both IPv6, an IPv4 one
// mapped. proxied is false when either is not an IP.
func expectedAddrs(src, dst netip.AddrPort) (s, d netip.AddrPort, proxied bool) {
	if !src.IsValid() || !dst.IsValid() {
		return s, d, false
	}
	sa, da := src.Addr().Unmap(), dst.Addr().Unmap()
	if !sa.Is4() || !da.Is4() {
		sa, da = netip.AddrFrom16(sa.As16()), netip.AddrFrom16(da.As16())
	}
	return netip.AddrPortFrom(sa, src.Port()), netip.AddrPortFrom(da, dst.Port()), true
}

// fuzzTLVs reads up to 8 TLVs from b: a type, a 16-bit length L, then the
// value's bytes, repeated to fill L so that a short input can ask for a
// 64 KiB value. A TypeSSL value is built with SSL from its first 5 bytes
// (client, verify) and the sub-TLVs the rest holds.
func fuzzTLVs(b []byte) []TLV {
	var tlvs []TLV
	for len(tlvs) < 8 && len(b) >= 3 {
		typ, n := b[0], int(binary.BigEndian.Uint16(b[1:3]))
		b = b[3:]
		k := min(n, len(b), 256)
		v := make([]byte, n)
		for i := 0; k > 0 && i < n; i += k {
			copy(v[i:], b[:k])
		}
		b = b[k:]
		if typ == TypeSSL && len(v) >= 5 {
			tlvs = append(tlvs, SSL(v[0], binary.BigEndian.Uint32(v[1:5]), fuzzSubTLVs(v[5:])...))
			continue
		}
		tlvs = append(tlvs, TLV{typ, v})
	}
	return tlvs
}

// fuzzSubTLVs reads sub-TLVs from b as they stand: a type, a 16-bit length,
// and at most that many of the bytes that follow. Values are not repeated,
// so that a TypeSSL value is never larger than the TLV it came from.
func fuzzSubTLVs(b []byte) []TLV {
	var subs []TLV
	for len(b) >= 3 {
		n := min(int(binary.BigEndian.Uint16(b[1:3])), len(b)-3)
		subs = append(subs, TLV{b[0], b[3 : 3+n]})
		b = b[3+n:]
	}
	return subs
}

// fittingTLVs is tlvs less those that would push the header's length field
// past 0xFFFF, as V2 documents.
func fittingTLVs(src netip.AddrPort, proxied bool, tlvs []TLV) []TLV {
	n := 0
	if proxied {
		n = 12
		if src.Addr().Is6() {
			n = 36
		}
	}
	var out []TLV
	for _, t := range tlvs {
		if n+3+len(t.Value) <= 0xFFFF {
			out = append(out, t)
			n += 3 + len(t.Value)
		}
	}
	return out
}
