package e2e

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"crypto/tls"
	"crypto/x509"
)

// ppHeader is what a PROXY protocol receiver learns, parsed here straight
// from the specification (haproxy's proxy-protocol.txt), independently of
// moat's encoder.
type ppHeader struct {
	src, dst netip.AddrPort
	tlvs     map[byte][]byte // top-level TLVs
	ssl      map[byte][]byte // PP2_TYPE_SSL sub-TLVs
	client   byte
}

var v2sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// readPP reads one v1 or v2 header from r.
func readPP(r *bufio.Reader) (*ppHeader, error) {
	peek, err := r.Peek(12)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(peek, v2sig) {
		return readPPv2(r)
	}
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasSuffix(line, "\r\n") || len(line) > 107 {
		return nil, fmt.Errorf("bad v1 line %q", line)
	}
	f := strings.Fields(strings.TrimSuffix(line, "\r\n"))
	if len(f) != 6 || f[0] != "PROXY" || (f[1] != "TCP4" && f[1] != "TCP6") {
		return nil, fmt.Errorf("bad v1 line %q", line)
	}
	src, err1 := netip.ParseAddr(f[2])
	dst, err2 := netip.ParseAddr(f[3])
	sp, err3 := strconv.ParseUint(f[4], 10, 16)
	dp, err4 := strconv.ParseUint(f[5], 10, 16)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		return nil, fmt.Errorf("bad v1 addresses in %q", line)
	}
	return &ppHeader{src: netip.AddrPortFrom(src, uint16(sp)), dst: netip.AddrPortFrom(dst, uint16(dp))}, nil
}

func readPPv2(r *bufio.Reader) (*ppHeader, error) {
	fixed := make([]byte, 16)
	if _, err := io.ReadFull(r, fixed); err != nil {
		return nil, err
	}
	if fixed[12]>>4 != 2 || fixed[12]&0xF != 1 { // version 2, command PROXY
		return nil, fmt.Errorf("v2 version/command byte %#x", fixed[12])
	}
	body := make([]byte, binary.BigEndian.Uint16(fixed[14:16]))
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	h := &ppHeader{tlvs: map[byte][]byte{}, ssl: map[byte][]byte{}}
	var rest []byte
	switch fixed[13] {
	case 0x11: // TCP over IPv4: 4+4+2+2
		src, _ := netip.AddrFromSlice(body[0:4])
		dst, _ := netip.AddrFromSlice(body[4:8])
		h.src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[8:10]))
		h.dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[10:12]))
		rest = body[12:]
	case 0x21: // TCP over IPv6: 16+16+2+2
		src, _ := netip.AddrFromSlice(body[0:16])
		dst, _ := netip.AddrFromSlice(body[16:32])
		h.src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[32:34]))
		h.dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(body[34:36]))
		rest = body[36:]
	default:
		return nil, fmt.Errorf("v2 family %#x", fixed[13])
	}
	tlvs, err := parseTLVs(rest)
	if err != nil {
		return nil, err
	}
	for _, t := range tlvs {
		h.tlvs[t.typ] = t.val
		if t.typ == 0x20 { // PP2_TYPE_SSL: client(1) verify(4) then sub-TLVs
			if len(t.val) < 5 {
				return nil, fmt.Errorf("short PP2_TYPE_SSL")
			}
			h.client = t.val[0]
			subs, err := parseTLVs(t.val[5:])
			if err != nil {
				return nil, err
			}
			for _, s := range subs {
				h.ssl[s.typ] = s.val
			}
		}
	}
	return h, nil
}

type tlv struct {
	typ byte
	val []byte
}

func parseTLVs(b []byte) ([]tlv, error) {
	var out []tlv
	for len(b) > 0 {
		if len(b) < 3 {
			return nil, fmt.Errorf("truncated TLV")
		}
		n := int(binary.BigEndian.Uint16(b[1:3]))
		if len(b) < 3+n {
			return nil, fmt.Errorf("TLV %#x overruns the header", b[0])
		}
		out = append(out, tlv{b[0], b[3 : 3+n]})
		b = b[3+n:]
	}
	return out, nil
}

// ppUpstream parses the header on each connection, then echoes.
func ppUpstream(t testing.TB, headers chan<- *ppHeader) *tcpUpstream {
	return startUpstream(t, func(c net.Conn) {
		r := bufio.NewReader(c)
		h, err := readPP(r)
		if err != nil {
			t.Errorf("upstream could not parse the PROXY header: %v", err)
			return
		}
		headers <- h
		line, _ := r.ReadString('\n')
		c.Write([]byte(strings.ToUpper(line)))
	})
}

// TestProxyProtocolV1AndV2 checks the upstream learns the real client
// address and port (v1 and v2) and, for mTLS, the client's identity, ALPN
// and SNI as v2 TLVs.
func TestProxyProtocolV1AndV2(t *testing.T) {
	ca := newPKI(t, "pp CA")
	srvCert, srvKey := ca.serverCert(t)
	spiffe, _ := url.Parse("spiffe://trust.example/ns/shop/sa/web")
	cliCert, cliKey := ca.issue(t, "web-client", func(c *x509.Certificate) { c.URIs = []*url.URL{spiffe} })
	for _, version := range []string{"v1", "v2"} {
		t.Run(version, func(t *testing.T) {
			headers := make(chan *ppHeader, 4)
			up := ppUpstream(t, headers)
			addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			startMoat(t, "server", "--listen", addr, "--target", up.addr(), "--cert", srvCert, "--key", srvKey,
				"--cacert", ca.file, "--allow-uri", spiffe.String(), "--alpn", "h2,http/1.1", "--proxy-protocol="+version)
			cert, err := tls.LoadX509KeyPair(cliCert, cliKey)
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca.cert)
			c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost",
				Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			echoLine(t, c, "through the proxy protocol\n")
			var h *ppHeader
			select {
			case h = <-headers:
			case <-time.After(5 * time.Second):
				t.Fatal("no header reached the upstream")
			}
			if h.src.String() != c.LocalAddr().String() {
				t.Fatalf("header source %s, want the client's address %s", h.src, c.LocalAddr())
			}
			if h.dst.String() != addr {
				t.Fatalf("header destination %s, want %s", h.dst, addr)
			}
			if version == "v1" {
				return
			}
			want := map[string][2]string{
				"ALPN":      {string(h.tlvs[0x01]), "http/1.1"},
				"authority": {string(h.tlvs[0x02]), "localhost"},
				"SSL CN":    {string(h.ssl[0x22]), "web-client"},
				"SPIFFE":    {string(h.tlvs[0xE4]), spiffe.String()},
			}
			for what, gw := range want {
				if gw[0] != gw[1] {
					t.Errorf("%s TLV %q, want %q", what, gw[0], gw[1])
				}
			}
			if h.client&0x01 == 0 || h.client&0x02 == 0 {
				t.Errorf("PP2_CLIENT_SSL and PP2_CLIENT_CERT_CONN not both set: %#x", h.client)
			}
			if v := string(h.ssl[0x21]); !strings.HasPrefix(v, "TLSv1.") {
				t.Errorf("SSL version sub-TLV %q", v)
			}
		})
	}
}
