package proxyproto

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"testing"

	pp "github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// The tests in this file read moat's headers with github.com/pires/go-proxyproto,
// a receiver written by other hands (and used by Go upstreams), so that
// parse_test.go's receiver is not the only judge of the encoder.

// piresRead reads one header from the start of b with pires/go-proxyproto
// and returns the bytes after it.
func piresRead(b []byte) (*pp.Header, []byte, error) {
	r := bufio.NewReader(bytes.NewReader(b))
	h, err := pp.Read(r)
	if err != nil {
		return nil, nil, err
	}
	rest, err := io.ReadAll(r)
	return h, rest, err
}

// piresAddr is a pires address as a netip.AddrPort, mapped IPv4 kept as
// sent, or the zero value for anything but TCP.
func piresAddr(a net.Addr) netip.AddrPort {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}
	}
	ip, _ := netip.AddrFromSlice(tcp.IP)
	return netip.AddrPortFrom(ip, uint16(tcp.Port))
}

func TestPiresReadsV1(t *testing.T) {
	for _, c := range []struct {
		name, src, dst string
		proto          pp.AddressFamilyAndProtocol
		wantSrc        string // as the receiver sees it, when it differs from src
	}{
		{"IPv4", "192.168.0.1:56324", "192.168.0.11:443", pp.TCPv4, ""},
		{"IPv6", "[2001:db8::1]:50000", "[2001:db8::2]:8443", pp.TCPv6, ""},
		{"IPv4-mapped accept socket", "[::ffff:10.0.0.7]:1234", "10.0.0.1:443", pp.TCPv4, "10.0.0.7:1234"},
		{"mixed families, written expanded", "10.0.0.7:1234", "[2001:db8::2]:443", pp.TCPv6, "[::ffff:10.0.0.7]:1234"},
		{"ports zero and max", "0.0.0.0:0", "255.255.255.255:65535", pp.TCPv4, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			src, dst := netip.MustParseAddrPort(c.src), netip.MustParseAddrPort(c.dst)
			h, rest, err := piresRead(append(V1(src, dst), payload...))
			if err != nil {
				t.Fatalf("pires refuses %q: %v", V1(src, dst), err)
			}
			if c.wantSrc != "" {
				src = netip.MustParseAddrPort(c.wantSrc)
			}
			gotSrc, gotDst := piresAddr(h.SourceAddr), piresAddr(h.DestinationAddr)
			if h.Version != 1 || h.Command != pp.PROXY || h.TransportProtocol != c.proto {
				t.Errorf("pires: version %d command %v protocol %v, want 1 PROXY %v", h.Version, h.Command, h.TransportProtocol, c.proto)
			}
			if gotSrc.Addr().Unmap() != src.Addr().Unmap() || gotSrc.Port() != src.Port() || gotDst.Addr().Unmap() != dst.Addr().Unmap() || gotDst.Port() != dst.Port() {
				t.Errorf("pires: %s → %s, want %s → %s", gotSrc, gotDst, src, dst)
			}
			if c.proto == pp.TCPv6 && !(gotSrc.Addr().Is6() && gotDst.Addr().Is6()) {
				t.Errorf("pires: TCP6 addresses %s → %s are not both IPv6", gotSrc, gotDst)
			}
			if !bytes.Equal(rest, payload) {
				t.Errorf("after the header: %q, want the payload", rest)
			}
		})
	}
	h, rest, err := piresRead(append(V1(netip.AddrPort{}, netip.MustParseAddrPort("127.0.0.1:8443")), payload...))
	if err != nil || h.TransportProtocol != pp.UNSPEC || !bytes.Equal(rest, payload) {
		t.Errorf("pires on PROXY UNKNOWN: %+v, rest %q, err %v; want UNSPEC then the payload", h, rest, err)
	}
}

func TestPiresReadsV2Addresses(t *testing.T) {
	for _, c := range []struct {
		name, src, dst string
		proto          pp.AddressFamilyAndProtocol
		wantSrc        string
	}{
		{"IPv4", "198.51.100.7:40000", "10.1.2.3:8443", pp.TCPv4, ""},
		{"IPv6", "[2001:db8:1::7]:40000", "[fd00::3]:8443", pp.TCPv6, ""},
		{"IPv4-mapped unmaps", "[::ffff:198.51.100.7]:40000", "10.1.2.3:8443", pp.TCPv4, "198.51.100.7:40000"},
		{"mixed families map into IPv6", "198.51.100.7:40000", "[fd00::3]:8443", pp.TCPv6, "[::ffff:198.51.100.7]:40000"},
	} {
		t.Run(c.name, func(t *testing.T) {
			src, dst := netip.MustParseAddrPort(c.src), netip.MustParseAddrPort(c.dst)
			h, rest, err := piresRead(append(V2(src, dst), payload...))
			if err != nil {
				t.Fatal(err)
			}
			if c.wantSrc != "" {
				src = netip.MustParseAddrPort(c.wantSrc)
			}
			gotSrc, gotDst := piresAddr(h.SourceAddr), piresAddr(h.DestinationAddr)
			if h.Version != 2 || h.Command != pp.PROXY || h.TransportProtocol != c.proto || gotSrc != src || gotDst != dst {
				t.Errorf("pires: v%d %v %v %s → %s; want v2 PROXY %v %s → %s", h.Version, h.Command, h.TransportProtocol, gotSrc, gotDst, c.proto, src, dst)
			}
			if tlvs, err := h.TLVs(); err != nil || len(tlvs) != 0 {
				t.Errorf("pires: TLVs %+v, %v; want none", tlvs, err)
			}
			if !bytes.Equal(rest, payload) {
				t.Errorf("after the header: %q, want the payload", rest)
			}
		})
	}
}

// TestPiresReadsTheTLVsOfARealHandshake: the header ForConnection builds
// after a real mTLS handshake, read by pires: ALPN, authority (SNI), the
// SSL TLV with its version, cipher and CN sub-TLVs and flags, and the 0xE4
// SPIFFE ID, within pires's default 4 KiB header limit.
func TestPiresReadsTheTLVsOfARealHandshake(t *testing.T) {
	const spiffe = "spiffe://cluster.local/ns/a/sa/web"
	cs := handshake(t, clientCert(t, "web", spiffe))
	client, local := netip.MustParseAddrPort("203.0.113.9:51000"), netip.MustParseAddrPort("10.0.0.5:8443")
	h, rest, err := piresRead(append(ForConnection(2, client, local, &cs), payload...))
	if err != nil || !bytes.Equal(rest, payload) {
		t.Fatalf("pires: %v, rest %q", err, rest)
	}
	if piresAddr(h.SourceAddr) != client || piresAddr(h.DestinationAddr) != local {
		t.Errorf("pires: %v → %v, want %s → %s", h.SourceAddr, h.DestinationAddr, client, local)
	}
	tlvs, err := h.TLVs()
	if err != nil {
		t.Fatal(err)
	}
	for typ, want := range map[pp.PP2Type]string{pp.PP2_TYPE_ALPN: "h2", pp.PP2_TYPE_AUTHORITY: "api.example.com", pp.PP2Type(TypeSPIFFEID): spiffe} {
		if got, ok := piresFind(tlvs, typ); !ok || got != want {
			t.Errorf("pires: TLV %#x = %q, %v; want %q", typ, got, ok, want)
		}
	}
	ssl, ok := tlvparse.FindSSL(tlvs)
	if !ok {
		t.Fatalf("pires finds no well-formed SSL TLV in %+v", tlvs)
	}
	if !ssl.ClientSSL() || !ssl.ClientCertConn() || !ssl.ClientCertSess() || !ssl.Verified() {
		t.Errorf("pires: SSL client %#x verify %d, want SSL|CERT_CONN|CERT_SESS, verified", ssl.Client, ssl.Verify)
	}
	version, _ := ssl.SSLVersion()
	cipher, _ := ssl.SSLCipher()
	cn, _ := ssl.ClientCN()
	if version != "TLSv1.3" || cipher != tls.CipherSuiteName(cs.CipherSuite) || cn != "web" {
		t.Errorf("pires: SSL version %q cipher %q CN %q; want TLSv1.3, %s, web", version, cipher, cn, tls.CipherSuiteName(cs.CipherSuite))
	}
}

// TestPiresReadsEveryTLVAndLocal: every TLV V2 writes, over IPv6 and in the
// LOCAL form moat sends for unix sockets.
func TestPiresReadsEveryTLVAndLocal(t *testing.T) {
	sent := []TLV{
		ALPN("http/1.1"), Authority("api.example.com"),
		SSL(ClientSSL, 1, SSLVersion("TLSv1.2"), SSLCipher("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")),
		SPIFFEID("spiffe://td/ns/x/sa/y"), {TypeUniqueID, []byte{1, 2, 3}}, {TypeNetNS, []byte("blue")},
	}
	src, dst := netip.MustParseAddrPort("[2001:db8::7]:5"), netip.MustParseAddrPort("[2001:db8::8]:6")
	for name, hdr := range map[string][]byte{"PROXY TCP6": V2(src, dst, sent...), "LOCAL": V2Local(sent...)} {
		h, rest, err := piresRead(append(hdr, payload...))
		if err != nil || !bytes.Equal(rest, payload) {
			t.Fatalf("%s: pires: %v, rest %q", name, err, rest)
		}
		wantCmd := map[string]pp.ProtocolVersionAndCommand{"PROXY TCP6": pp.PROXY, "LOCAL": pp.LOCAL}[name]
		if h.Command != wantCmd {
			t.Errorf("%s: pires reads command %v", name, h.Command)
		}
		got, err := h.TLVs()
		if err != nil || len(got) != len(sent) {
			t.Fatalf("%s: pires: %d TLVs, %v; sent %d", name, len(got), err, len(sent))
		}
		for i, want := range sent {
			if byte(got[i].Type) != want.Type || !bytes.Equal(got[i].Value, want.Value) {
				t.Errorf("%s: TLV %d = %#x %q, sent %#x %q", name, i, got[i].Type, got[i].Value, want.Type, want.Value)
			}
		}
		ssl, ok := tlvparse.FindSSL(got)
		if !ok || !ssl.ClientSSL() || ssl.ClientCertConn() || ssl.Verified() {
			t.Errorf("%s: pires SSL TLV %+v, %v; want SSL only, not verified", name, ssl, ok)
		}
	}
}

func piresFind(tlvs []pp.TLV, typ pp.PP2Type) (string, bool) {
	for _, t := range tlvs {
		if t.Type == typ {
			return string(t.Value), true
		}
	}
	return "", false
}
