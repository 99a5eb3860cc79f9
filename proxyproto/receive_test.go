package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	pp "github.com/pires/go-proxyproto"
)

// clientHelloStart is the first bytes a TLS client sends after a header.
var clientHelloStart = []byte{0x16, 0x03, 0x01, 0x00, 0xc8, 0x01}

// piresHeader encodes a header with pires/go-proxyproto, an encoder written
// by others, so that Parse is checked against more than moat's own.
func piresHeader(t testing.TB, h *pp.Header) []byte {
	t.Helper()
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tcp(s string) *net.TCPAddr {
	ap := netip.MustParseAddrPort(s)
	return net.TCPAddrFromAddrPort(ap)
}

// TestParseByteByByte feeds every header one byte at a time, as a
// non-blocking socket may deliver it: every proper prefix is incomplete,
// the whole header parses, and the TLS bytes after it are left alone.
func TestParseByteByByte(t *testing.T) {
	tlvs := []pp.TLV{{Type: pp.PP2_TYPE_AUTHORITY, Value: []byte("api.example.com")}, {Type: 0xEA, Value: []byte("vpce-0123456789abcdef0")}}
	for _, c := range []struct {
		name     string
		hdr      []byte
		want     Header
		wantText string
	}{
		{"v1 TCP4", piresHeader(t, &pp.Header{Version: 1, Command: pp.PROXY, TransportProtocol: pp.TCPv4,
			SourceAddr: tcp("192.0.2.1:56324"), DestinationAddr: tcp("198.51.100.2:443")}),
			Header{Version: 1, Source: netip.MustParseAddrPort("192.0.2.1:56324"), Dest: netip.MustParseAddrPort("198.51.100.2:443")}, ""},
		{"v1 TCP6", piresHeader(t, &pp.Header{Version: 1, Command: pp.PROXY, TransportProtocol: pp.TCPv6,
			SourceAddr: tcp("[2001:db8::1]:1"), DestinationAddr: tcp("[2001:db8::2]:65535")}),
			Header{Version: 1, Source: netip.MustParseAddrPort("[2001:db8::1]:1"), Dest: netip.MustParseAddrPort("[2001:db8::2]:65535")}, ""},
		{"v1 UNKNOWN", []byte("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"), Header{Version: 1, Local: true}, ""},
		{"v1 longest", []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
			Header{Version: 1, Source: netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
				Dest: netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")}, ""},
		{"v2 TCP4 with TLVs", func() []byte {
			h := &pp.Header{Version: 2, Command: pp.PROXY, TransportProtocol: pp.TCPv4,
				SourceAddr: tcp("203.0.113.7:40000"), DestinationAddr: tcp("10.0.0.5:8443")}
			h.SetTLVs(tlvs)
			return piresHeader(t, h)
		}(), Header{Version: 2, Source: netip.MustParseAddrPort("203.0.113.7:40000"), Dest: netip.MustParseAddrPort("10.0.0.5:8443")}, ""},
		{"v2 TCP6", piresHeader(t, &pp.Header{Version: 2, Command: pp.PROXY, TransportProtocol: pp.TCPv6,
			SourceAddr: tcp("[2001:db8::7]:40000"), DestinationAddr: tcp("[2001:db8::5]:443")}),
			Header{Version: 2, Source: netip.MustParseAddrPort("[2001:db8::7]:40000"), Dest: netip.MustParseAddrPort("[2001:db8::5]:443")}, ""},
		{"v2 LOCAL", piresHeader(t, &pp.Header{Version: 2, Command: pp.LOCAL, TransportProtocol: pp.UNSPEC}), Header{Version: 2, Local: true}, ""},
		{"v2 moat's own", V2(netip.MustParseAddrPort("192.0.2.9:1234"), netip.MustParseAddrPort("192.0.2.10:443"), ALPN("h2")),
			Header{Version: 2, Source: netip.MustParseAddrPort("192.0.2.9:1234"), Dest: netip.MustParseAddrPort("192.0.2.10:443")}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			stream := append(append([]byte(nil), c.hdr...), clientHelloStart...)
			for k := 0; k < len(c.hdr); k++ {
				if _, _, err := Parse(stream[:k]); !errors.Is(err, ErrIncomplete) {
					t.Fatalf("after %d of %d bytes: %v, want ErrIncomplete", k, len(c.hdr), err)
				}
			}
			for k := len(c.hdr); k <= len(stream); k++ {
				h, n, err := Parse(stream[:k])
				if err != nil || n != len(c.hdr) || h != c.want {
					t.Fatalf("with %d bytes: %+v, %d, %v; want %+v, %d", k, h, n, err, c.want, len(c.hdr))
				}
			}
		})
	}
}

func v2Raw(cmdByte, fam byte, length int, body []byte) []byte {
	b := append([]byte(nil), signature[:]...)
	b = append(b, cmdByte, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(length))
	return append(b, body...)
}

// TestParseRefusesBadHeaders: each final error comes as soon as the
// offending byte is there, before the bound or a timeout.
func TestParseRefusesBadHeaders(t *testing.T) {
	v4pair := make([]byte, 12)
	for _, c := range []struct {
		name string
		in   []byte
		want error
	}{
		{"TLS instead of a header", clientHelloStart, ErrNotHeader},
		{"HTTP", []byte("GET / HTTP/1.1\r\n"), ErrNotHeader},
		{"v1 misspelt", []byte("PROXZ"), ErrNotHeader},
		{"v2 signature broken", append(append([]byte(nil), signature[:7]...), 'X'), ErrNotHeader},
		{"v1 without CRLF within 107 bytes", []byte("PROXY TCP4 " + strings.Repeat("1", 96)), ErrTooLong},
		{"v1 LF without CR", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), ErrMalformed},
		{"v1 CR then garbage", []byte("PROXY TCP4\rx"), ErrMalformed},
		{"v1 port over 65535", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), ErrMalformed},
		{"v1 port with a leading zero", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n"), ErrMalformed},
		{"v1 TCP4 with an IPv6 address", []byte("PROXY TCP4 ::1 5.6.7.8 1 2\r\n"), ErrMalformed},
		{"v1 two spaces", []byte("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), ErrMalformed},
		{"v1 unknown protocol", []byte("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), ErrMalformed},
		{"v1 missing port", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), ErrMalformed},
		{"v2 length beyond the bound", v2Raw(0x21, 0x11, MaxV2Length+1, nil), ErrTooLong},
		{"v2 length 65535", v2Raw(0x21, 0x11, 0xFFFF, nil), ErrTooLong},
		{"v2 unknown command", v2Raw(0x22, 0x11, 12, v4pair), ErrMalformed},
		{"v2 version 3", v2Raw(0x31, 0x11, 12, v4pair), ErrMalformed},
		{"v2 unknown family", v2Raw(0x21, 0x41, 12, v4pair), ErrMalformed},
		{"v2 UDP", v2Raw(0x21, 0x12, 12, v4pair), ErrMalformed},
		{"v2 addresses cut short", v2Raw(0x21, 0x11, 4, v4pair[:4]), ErrMalformed},
		{"v2 TLV past the end", v2Raw(0x21, 0x11, 16, append(append([]byte(nil), v4pair...), 0x01, 0x00, 0x09, 'x')), ErrMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := Parse(c.in)
			if !errors.Is(err, c.want) {
				t.Fatalf("%q: %v, want %v", c.in, err, c.want)
			}
		})
	}
}

func TestLooksLikeHeader(t *testing.T) {
	for in, want := range map[string]bool{
		"P": true, "PROXY TCP4": true, "\r\n\r\n": true, string(signature[:]) + "\x21": true,
		string(clientHelloStart): false, "GET /": false, "PR0XY": false,
	} {
		if got := LooksLikeHeader([]byte(in)); got != want {
			t.Errorf("LooksLikeHeader(%q) = %v, want %v", in, got, want)
		}
	}
}

// FuzzParse checks Parse on arbitrary bytes: it never panics, takes no
// more than it was given or than the bound, decides the same on the bytes
// it took as on more, and calls every proper prefix of an accepted header
// incomplete (so a header split anywhere is still read). An accepted
// header with addresses is also one pires/go-proxyproto reads to the same
// source.
func FuzzParse(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n\x16\x03\x01"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(V2(netip.MustParseAddrPort("[2001:db8::1]:1"), netip.MustParseAddrPort("[2001:db8::2]:2"), Authority("x"), SPIFFEID("spiffe://a/b")))
	f.Add(V2Local(ALPN("h2")))
	f.Add(v2Raw(0x21, 0x31, 216, make([]byte, 216)))
	f.Add(v2Raw(0x21, 0x11, 15, append(make([]byte, 12), 0x04, 0, 0)))
	f.Add(clientHelloStart)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := Parse(b)
		if err != nil {
			if n != 0 {
				t.Fatalf("error %v with n=%d", err, n)
			}
			if errors.Is(err, ErrIncomplete) && len(b) >= MaxHeaderLen {
				t.Fatalf("%d bytes still incomplete, over the bound %d", len(b), MaxHeaderLen)
			}
			return
		}
		if n <= 0 || n > len(b) || n > MaxHeaderLen {
			t.Fatalf("took %d of %d bytes", n, len(b))
		}
		h2, n2, err2 := Parse(b[:n])
		if err2 != nil || n2 != n || h2 != h {
			t.Fatalf("on the %d bytes it took: %+v %d %v, before %+v", n, h2, n2, err2, h)
		}
		for k := 0; k < n; k++ {
			if _, _, err := Parse(b[:k]); !errors.Is(err, ErrIncomplete) {
				t.Fatalf("prefix of %d of %d bytes: %v", k, n, err)
			}
		}
		if h.Local != (h.Source == netip.AddrPort{}) {
			t.Fatalf("Local=%v with source %v", h.Local, h.Source)
		}
		if h.Local {
			return
		}
		ph, _, perr := piresRead(append(bytes.Clone(b[:n]), clientHelloStart...))
		if perr != nil {
			t.Fatalf("Parse accepted %q as %+v; pires refuses it: %v", b[:n], h, perr)
		}
		if got := piresAddr(ph.SourceAddr); got != h.Source {
			t.Fatalf("source %v, pires reads %v", h.Source, got)
		}
	})
}

// BenchmarkParse measures a whole header parsed at once, the common case
// (a load balancer writes it in one segment); a header split in k reads
// costs up to k of these.
func BenchmarkParse(b *testing.B) {
	for _, c := range []struct {
		name string
		hdr  []byte
	}{
		{"v1", []byte("PROXY TCP4 203.0.113.7 10.0.0.5 40000 8443\r\n")},
		{"v2+TLV", V2(netip.MustParseAddrPort("203.0.113.7:40000"), netip.MustParseAddrPort("10.0.0.5:8443"), TLV{0xEA, []byte("vpce-0123456789abcdef0")})},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := Parse(c.hdr); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
