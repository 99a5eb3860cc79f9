package e2e

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	pp "github.com/pires/go-proxyproto"
)

// lbHeader is what a load balancer in front of moat sends first, encoded
// by pires/go-proxyproto.
func lbHeader(t *testing.T, version byte, src, dst string) []byte {
	t.Helper()
	h := &pp.Header{Version: version, Command: pp.PROXY, TransportProtocol: pp.TCPv4,
		SourceAddr:      net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)),
		DestinationAddr: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(dst))}
	if version == 2 {
		h.SetTLVs([]pp.TLV{{Type: 0xEA, Value: []byte("vpce-0a1b2c3d4e5f60718")}}) // as AWS NLB sends
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAcceptProxyProtocolCarriesTheClientThrough: the real binary behind a
// "load balancer" (a Go client writing a PROXY header, then TLS) takes the
// header's client address as the connection's: the upstream's own PROXY
// header names it, and so does the connection log line. A source outside
// --accept-proxy-protocol that sends a header is refused and counted.
func TestAcceptProxyProtocolCarriesTheClientThrough(t *testing.T) {
	ca := newPKI(t, "accept-pp CA")
	cert, key := ca.serverCert(t)
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	for _, version := range []byte{1, 2} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			headers := make(chan *ppHeader, 4)
			up := ppUpstream(t, headers)
			o := &opsServer{addr: fmt.Sprintf("127.0.0.1:%d", freePort(t)), status: fmt.Sprintf("127.0.0.1:%d", freePort(t)), roots: roots}
			o.m = startMoat(t, "server", "--listen", o.addr, "--target", up.addr(), "--cert", cert, "--key", key,
				"--disable-authentication", "--proxy-protocol=v2", "--accept-proxy-protocol", "10.9.8.0/24,127.0.0.1",
				"--status", o.status)
			raw, err := net.DialTimeout("tcp", o.addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			client, front := "203.0.113.7:40000", "198.51.100.10:443"
			if _, err := raw.Write(lbHeader(t, version, client, front)); err != nil {
				t.Fatal(err)
			}
			c := tls.Client(raw, &tls.Config{RootCAs: roots, ServerName: "localhost"})
			echoLine(t, c, "behind a load balancer\n")
			select {
			case h := <-headers:
				if h.src.String() != client || h.dst.String() != front {
					t.Fatalf("upstream header %s -> %s, want %s -> %s", h.src, h.dst, client, front)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no header reached the upstream")
			}
			c.Close()
			o.m.waitFor(t, `"client":"`+client+`"`, 5*time.Second)

			// 127.0.0.1 is trusted here, so an untrusted source needs
			// another loopback address.
			other, err := dialFrom("127.0.0.2", o.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			other.Write(lbHeader(t, version, "203.0.113.99:1", front))
			other.SetReadDeadline(time.Now().Add(10 * time.Second))
			if n, err := bufio.NewReader(other).Read(make([]byte, 1)); n != 0 || err == nil || isTimeout(err) {
				t.Fatalf("an untrusted header was answered: %d bytes, %v", n, err)
			}
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				v := value(o.metrics(t), "moat_proxy_header_refused_total", map[string]string{"reason": "untrusted"})
				if v == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf(`moat_proxy_header_refused_total{reason="untrusted"} = %v, want 1`, v)
				}
			}
			o.m.waitFor(t, "a PROXY protocol header from a source outside the trusted ranges", 5*time.Second)
			if n := up.accepted.Load(); n != 1 {
				t.Fatalf("%d upstream dials, want 1", n)
			}
		})
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout() && !strings.Contains(err.Error(), "reset")
}
