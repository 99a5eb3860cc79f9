package proxyproto

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"net"
	"net/netip"
	"net/url"
	"testing"
	"time"

	"github.com/moat-proxy/moat/internal/testpki"
)

var payload = []byte("GET / HTTP/1.1\r\n\r\n")

func TestV1LinesRoundTrip(t *testing.T) {
	cases := []struct {
		name     string
		src, dst string
		line     string
		src2     string // what the receiver sees, when it differs from src
		dst2     string
	}{
		{"IPv4 example from the spec", "192.168.0.1:56324", "192.168.0.11:443", "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n", "", ""},
		{"IPv6", "[2001:db8::1]:50000", "[2001:db8::2]:8443", "PROXY TCP6 2001:db8::1 2001:db8::2 50000 8443\r\n", "", ""},
		{"IPv4-mapped accept socket", "[::ffff:10.0.0.7]:1234", "[::ffff:10.0.0.1]:443", "PROXY TCP4 10.0.0.7 10.0.0.1 1234 443\r\n", "10.0.0.7:1234", "10.0.0.1:443"},
		{"mixed families become IPv6", "10.0.0.7:1234", "[2001:db8::2]:443",
			"PROXY TCP6 0000:0000:0000:0000:0000:ffff:0a00:0007 2001:db8::2 1234 443\r\n", "[::ffff:10.0.0.7]:1234", ""},
		{"port zero and max", "0.0.0.0:0", "255.255.255.255:65535", "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n", "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src, dst := netip.MustParseAddrPort(c.src), netip.MustParseAddrPort(c.dst)
			line := V1(src, dst)
			if string(line) != c.line {
				t.Fatalf("V1 = %q, want %q", line, c.line)
			}
			h, rest, err := parse(append(line, payload...))
			if err != nil {
				t.Fatalf("receiver rejects %q: %v", line, err)
			}
			wantSrc, wantDst := src, dst
			if c.src2 != "" {
				wantSrc = netip.MustParseAddrPort(c.src2)
			}
			if c.dst2 != "" {
				wantDst = netip.MustParseAddrPort(c.dst2)
			}
			if h.version != 1 || h.src != wantSrc || h.dst != wantDst || !bytes.Equal(rest, payload) {
				t.Errorf("received v%d %s → %s, rest %q; want %s → %s and the payload", h.version, h.src, h.dst, rest, wantSrc, wantDst)
			}
		})
	}
}

func TestV1UnknownForUnixSockets(t *testing.T) {
	line := V1(netip.AddrPort{}, netip.MustParseAddrPort("127.0.0.1:8443"))
	if string(line) != "PROXY UNKNOWN\r\n" {
		t.Fatalf("V1 without a client IP = %q", line)
	}
	h, rest, err := parse(append(line, payload...))
	if err != nil || !h.local || !bytes.Equal(rest, payload) {
		t.Errorf("receiver: %+v, rest %q, err %v; want UNKNOWN then the payload", h, rest, err)
	}
}

// TestV2IPv4Bytes pins the wire layout against the specification's structs
// for one header, byte by byte.
func TestV2IPv4Bytes(t *testing.T) {
	got := V2(netip.MustParseAddrPort("192.168.0.1:56324"), netip.MustParseAddrPort("192.168.0.11:443"))
	want := "0d0a0d0a000d0a515549540a" + // signature
		"21" + "11" + "000c" + // v2 PROXY, TCP over IPv4, 12 address bytes
		"c0a80001" + "c0a8000b" + "dc04" + "01bb" // src, dst, 56324, 443
	if hex.EncodeToString(got) != want {
		t.Errorf("V2 =\n%x\nwant\n%s", got, want)
	}
}

func TestV2AddressesRoundTrip(t *testing.T) {
	cases := []struct{ name, src, dst, family, wantSrc string }{
		{"IPv4", "198.51.100.7:40000", "10.1.2.3:8443", "TCP4", ""},
		{"IPv6", "[2001:db8:1::7]:40000", "[fd00::3]:8443", "TCP6", ""},
		{"IPv4-mapped unmaps", "[::ffff:198.51.100.7]:40000", "10.1.2.3:8443", "TCP4", "198.51.100.7:40000"},
		{"mixed families map into IPv6", "198.51.100.7:40000", "[fd00::3]:8443", "TCP6", "[::ffff:198.51.100.7]:40000"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src, dst := netip.MustParseAddrPort(c.src), netip.MustParseAddrPort(c.dst)
			h, rest, err := parse(append(V2(src, dst), payload...))
			if err != nil {
				t.Fatal(err)
			}
			if c.wantSrc != "" {
				src = netip.MustParseAddrPort(c.wantSrc)
			}
			if h.version != 2 || h.local || h.family != c.family || h.src != src || h.dst != dst || len(h.tlvs) != 0 {
				t.Errorf("received %+v; want PROXY %s %s → %s, no TLVs", h, c.family, src, dst)
			}
			if !bytes.Equal(rest, payload) {
				t.Errorf("after the header: %q, want the payload", rest)
			}
		})
	}
}

func TestV2EveryTLVRoundTrips(t *testing.T) {
	sslTLV := SSL(ClientSSL|ClientCertConn|ClientCertSess, 0,
		SSLVersion("TLSv1.3"), SSLCN("web"), SSLCipher("TLS_AES_128_GCM_SHA256"),
		TLV{SubtypeSSLSigAlg, []byte("ECDSA-SHA256")}, TLV{SubtypeSSLKeyAlg, []byte("EC256")})
	tlvs := []TLV{
		ALPN("h2"), Authority("api.example.com"), sslTLV, SPIFFEID("spiffe://cluster.local/ns/a/sa/web"),
		{TypeUniqueID, []byte{1, 2, 3}}, {TypeNoop, nil}, {TypeNetNS, []byte("blue")},
	}
	src, dst := netip.MustParseAddrPort("[2001:db8::7]:5"), netip.MustParseAddrPort("[2001:db8::8]:6")
	h, rest, err := parse(append(V2(src, dst, tlvs...), payload...))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rest, payload) || h.src != src || h.dst != dst {
		t.Fatalf("received %s → %s, rest %q", h.src, h.dst, rest)
	}
	if len(h.tlvs) != len(tlvs) {
		t.Fatalf("received %d TLVs, sent %d", len(h.tlvs), len(tlvs))
	}
	for i, want := range tlvs {
		if got := h.tlvs[i]; got.Type != want.Type || !bytes.Equal(got.Value, want.Value) {
			t.Errorf("TLV %d = %#x %q, want %#x %q", i, got.Type, got.Value, want.Type, want.Value)
		}
	}
	s, err := parseSSL(h.tlvs[2].Value)
	if err != nil {
		t.Fatal(err)
	}
	if s.client != ClientSSL|ClientCertConn|ClientCertSess || s.verify != 0 {
		t.Errorf("SSL client %#x verify %d, want 0x07 and 0", s.client, s.verify)
	}
	for typ, want := range map[byte]string{SubtypeSSLVersion: "TLSv1.3", SubtypeSSLCN: "web",
		SubtypeSSLCipher: "TLS_AES_128_GCM_SHA256", SubtypeSSLSigAlg: "ECDSA-SHA256", SubtypeSSLKeyAlg: "EC256"} {
		if got, ok := find(s.subs, typ); !ok || got != want {
			t.Errorf("SSL sub-TLV %#x = %q, %v; want %q", typ, got, ok, want)
		}
	}
}

func TestV2LocalForUnixSockets(t *testing.T) {
	for _, hdr := range [][]byte{V2Local(ALPN("h2")), V2(netip.AddrPort{}, netip.AddrPort{}, ALPN("h2"))} {
		if hdr[12] != 0x20 || hdr[13] != 0x00 {
			t.Errorf("ver_cmd %#x fam %#x, want LOCAL (0x20) and UNSPEC (0x00)", hdr[12], hdr[13])
		}
		h, rest, err := parse(append(hdr, payload...))
		if err != nil || !h.local || h.family != "UNSPEC" || !bytes.Equal(rest, payload) {
			t.Fatalf("received %+v, rest %q, err %v", h, rest, err)
		}
		if alpn, ok := find(h.tlvs, TypeALPN); !ok || alpn != "h2" {
			t.Errorf("LOCAL header lost its TLVs: %+v", h.tlvs)
		}
	}
}

func TestV2LeavesOutATLVThatWouldOverflowTheLength(t *testing.T) {
	huge := TLV{TypeUniqueID, bytes.Repeat([]byte{'x'}, 0xFFFF-12-3+1)} // one byte too many with the IPv4 block
	hdr := V2(netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:2"), ALPN("h2"), huge, Authority("a"))
	h, rest, err := parse(hdr)
	if err != nil || len(rest) != 0 {
		t.Fatalf("header no longer parses: %v (rest %d bytes)", err, len(rest))
	}
	if len(h.tlvs) != 2 || h.tlvs[0].Type != TypeALPN || h.tlvs[1].Type != TypeAuthority {
		t.Errorf("TLVs %+v, want ALPN and Authority with the oversized one left out", h.tlvs)
	}
}

// clientCert makes a client certificate naming cn and, as a URI SAN, uri;
// the server in the test asks for any certificate.
func clientCert(t *testing.T, cn, uri string) tls.Certificate {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	return testpki.NewCA().IssueClientWith(cn, func(c *x509.Certificate) {
		c.URIs = []*url.URL{{Scheme: "https", Host: "example.com"}, u}
	}).TLS()
}

// handshake runs a real mTLS handshake over loopback TCP and returns the
// server's view of it, as the proxy has it when it dials the upstream.
func handshake(t *testing.T, client tls.Certificate) tls.ConnectionState {
	t.Helper()
	serverCert := clientCert(t, "server", "spiffe://x/server") // any certificate will do: the client skips verification
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
			ServerName: "api.example.com", NextProtos: []string{"h2"},
			Certificates: []tls.Certificate{client}, InsecureSkipVerify: true,
		})
		if err == nil {
			c.Read(make([]byte, 1)) // until the server closes
			c.Close()
		}
	}()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	srv := tls.Server(raw, &tls.Config{Certificates: []tls.Certificate{serverCert},
		ClientAuth: tls.RequireAnyClientCert, NextProtos: []string{"h2", "http/1.1"}})
	if err := srv.Handshake(); err != nil {
		t.Fatal(err)
	}
	return srv.ConnectionState()
}

func TestForConnectionCarriesClientIdentityFromARealHandshake(t *testing.T) {
	cs := handshake(t, clientCert(t, "web", "spiffe://cluster.local/ns/a/sa/web"))
	client, local := netip.MustParseAddrPort("203.0.113.9:51000"), netip.MustParseAddrPort("10.0.0.5:8443")

	h, rest, err := parse(append(ForConnection(2, client, local, &cs), payload...))
	if err != nil || !bytes.Equal(rest, payload) {
		t.Fatalf("v2 header: %v, rest %q", err, rest)
	}
	if h.src != client || h.dst != local {
		t.Errorf("addresses %s → %s, want %s → %s", h.src, h.dst, client, local)
	}
	for typ, want := range map[byte]string{TypeALPN: "h2", TypeAuthority: "api.example.com", TypeSPIFFEID: "spiffe://cluster.local/ns/a/sa/web",
		TypeTLSGroup: cs.CurveID.String(), TypeTLSResumed: "\x00"} {
		if got, ok := find(h.tlvs, typ); !ok || got != want {
			t.Errorf("TLV %#x = %q, %v; want %q", typ, got, ok, want)
		}
	}
	v, _ := find(h.tlvs, TypeSSL)
	s, err := parseSSL([]byte(v))
	if err != nil {
		t.Fatal(err)
	}
	if s.client != ClientSSL|ClientCertConn|ClientCertSess || s.verify != 0 {
		t.Errorf("SSL client %#x verify %d, want SSL|CERT_CONN|CERT_SESS and 0", s.client, s.verify)
	}
	for typ, want := range map[byte]string{SubtypeSSLVersion: "TLSv1.3", SubtypeSSLCN: "web", SubtypeSSLCipher: tls.CipherSuiteName(cs.CipherSuite)} {
		if got, ok := find(s.subs, typ); !ok || got != want {
			t.Errorf("SSL sub-TLV %#x = %q, %v; want %q", typ, got, ok, want)
		}
	}

	h1, rest, err := parse(append(ForConnection(1, client, local, &cs), payload...))
	if err != nil || h1.version != 1 || h1.src != client || h1.dst != local || !bytes.Equal(rest, payload) {
		t.Errorf("v1: %+v, rest %q, err %v", h1, rest, err)
	}
}

func TestForConnectionFlags(t *testing.T) {
	leaf := &x509.Certificate{Subject: pkix.Name{CommonName: "web"}}
	cases := []struct {
		name   string
		cs     tls.ConnectionState
		client byte
		verify uint32
		cn     bool
	}{
		{"no client certificate", tls.ConnectionState{Version: tls.VersionTLS12}, ClientSSL, 1, false},
		{"certificate on this connection", tls.ConnectionState{Version: tls.VersionTLS13, PeerCertificates: []*x509.Certificate{leaf}},
			ClientSSL | ClientCertConn | ClientCertSess, 0, true},
		{"resumed session that had one", tls.ConnectionState{Version: tls.VersionTLS13, DidResume: true, PeerCertificates: []*x509.Certificate{leaf}},
			ClientSSL | ClientCertSess, 0, true},
	}
	a, b := netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:2")
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h, _, err := parse(ForConnection(2, a, b, &c.cs))
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := find(h.tlvs, TypeALPN); ok {
				t.Error("ALPN TLV sent though none was negotiated")
			}
			if _, ok := find(h.tlvs, TypeTLSGroup); ok {
				t.Error("group TLV sent though no key exchange was negotiated")
			}
			if r, _ := find(h.tlvs, TypeTLSResumed); (r == "\x01") != c.cs.DidResume || len(r) != 1 {
				t.Errorf("resumed TLV %q, want one byte saying %v", r, c.cs.DidResume)
			}
			v, _ := find(h.tlvs, TypeSSL)
			s, err := parseSSL([]byte(v))
			if err != nil {
				t.Fatal(err)
			}
			if s.client != c.client || s.verify != c.verify {
				t.Errorf("client %#x verify %d, want %#x %d", s.client, s.verify, c.client, c.verify)
			}
			if _, ok := find(s.subs, SubtypeSSLCN); ok != c.cn {
				t.Errorf("CN sub-TLV present = %v, want %v", ok, c.cn)
			}
		})
	}
}

// TestReceiverRejectsMalformedHeaders shows the test receiver is strict
// where the specification says to drop the connection, so that the round
// trips above prove something.
func TestReceiverRejectsMalformedHeaders(t *testing.T) {
	good := V2(netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:2"), ALPN("h2"))
	badLen := append([]byte(nil), good...)
	badLen[len(badLen)-3] = 9 // ALPN claims more bytes than the header holds...
	badLen[15] += 0           // ...while the header length stays the same
	badCmd := append([]byte(nil), good...)
	badCmd[12] = 0x22
	for name, b := range map[string][]byte{
		"v2 truncated":          good[:len(good)-1],
		"v2 TLV overruns":       badLen,
		"v2 unassigned command": badCmd,
		"v1 port heading zero":  []byte("PROXY TCP4 10.0.0.1 10.0.0.2 0443 443\r\n"),
		"v1 IPv4 heading zero":  []byte("PROXY TCP4 10.0.0.01 10.0.0.2 443 443\r\n"),
		"v1 lone LF":            []byte("PROXY TCP4 10.0.0.1 10.0.0.2 1 443\n"),
		"v1 dotted TCP6":        []byte("PROXY TCP6 ::ffff:10.0.0.1 ::1 1 443\r\n"),
		"v1 two spaces":         []byte("PROXY TCP4  10.0.0.1 10.0.0.2 1 443\r\n"),
		"neither":               []byte("GET / HTTP/1.1\r\n"),
	} {
		if _, _, err := parse(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
