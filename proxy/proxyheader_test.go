package proxy

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	pp "github.com/pires/go-proxyproto"
	"github.com/rs/zerolog"

	"github.com/moat-proxy/moat/proxyproto"
)

// headerCounter is an Observer that counts refused headers and keeps the
// close summaries.
type headerCounter struct {
	nopObserver
	mu      sync.Mutex
	refused map[HeaderRefusal]int
	closed  []Summary
}

func (h *headerCounter) HeaderRefused(r HeaderRefusal) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.refused == nil {
		h.refused = map[HeaderRefusal]int{}
	}
	h.refused[r]++
}

func (h *headerCounter) Closed(s *Summary) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = append(h.closed, *s)
}

func (h *headerCounter) count(r HeaderRefusal) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.refused[r]
}

// proxiedServer is a server that trusts trusted for headers, in front of
// an upstream that records the header moat sends it (as text: client
// address) and echoes the rest.
type proxiedServer struct {
	srv     *Server
	ccfg    *tls.Config
	up      *upstreamServer
	obs     *headerCounter
	clients chan string
	logs    *syncBuffer
}

func startProxied(t *testing.T, trusted string, edits ...func(*Config)) *proxiedServer {
	t.Helper()
	p := &proxiedServer{obs: &headerCounter{}, clients: make(chan string, 16), logs: &syncBuffer{}}
	p.up = startUpstream(t, "tcp", "127.0.0.1:0", func(c net.Conn) {
		line := make([]byte, 0, 64)
		one := make([]byte, 1)
		for {
			if _, err := c.Read(one); err != nil {
				return
			}
			if one[0] == '\n' {
				break
			}
			line = append(line, one[0])
		}
		p.clients <- string(line)
		echo(c)
	})
	p.srv, p.ccfg = startServer(t, p.up.addr(), func(c *Config) {
		c.AcceptProxyHeader = []netip.Prefix{netip.MustParsePrefix(trusted)}
		c.ClientHelloTimeout = 2 * time.Second
		c.Observer = p.obs
		c.Log = zerolog.New(p.logs).Level(zerolog.WarnLevel)
		c.UpstreamHeader = func(client, local netip.AddrPort, cs *tls.ConnectionState) []byte {
			return []byte(client.String() + "\n")
		}
		for _, e := range edits {
			e(c)
		}
	})
	return p
}

func (p *proxiedServer) dial(t *testing.T) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", p.srv.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// roundTrip speaks TLS over c (after whatever the test wrote first) and
// checks a line comes back through the upstream.
func (p *proxiedServer) roundTrip(t *testing.T, c net.Conn) {
	t.Helper()
	tc := tls.Client(c, p.ccfg)
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := tc.Write([]byte("ping\n")); err != nil {
		t.Fatalf("TLS after the header: %v", err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(tc, got); err != nil || string(got) != "ping\n" {
		t.Fatalf("echo: %q, %v", got, err)
	}
}

func (p *proxiedServer) upstreamSaw(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-p.clients:
		if got != want {
			t.Fatalf("the upstream's header names client %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream was not dialled")
	}
}

// closedUnserved waits for the server to close c without a byte.
func closedUnserved(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %d bytes, %v; want the connection closed", n, err)
	}
}

func piresBytes(t *testing.T, version byte, src string) []byte {
	t.Helper()
	proto := pp.TCPv4
	if netip.MustParseAddrPort(src).Addr().Is6() {
		proto = pp.TCPv6
	}
	h := &pp.Header{Version: version, Command: pp.PROXY, TransportProtocol: proto,
		SourceAddr:      net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)),
		DestinationAddr: net.TCPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:443"))}
	if proto == pp.TCPv6 {
		h.DestinationAddr = net.TCPAddrFromAddrPort(netip.MustParseAddrPort("[::1]:443"))
	}
	if version == 2 {
		h.SetTLVs([]pp.TLV{{Type: 0xEA, Value: []byte("vpce-0123456789abcdef0")}})
	}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestProxyHeaderCarriesTheClientAddress: a Go client writes a PROXY
// header encoded by pires/go-proxyproto, then speaks TLS; the upstream's
// own header names the address the PROXY header carried. Versions 1 and 2,
// whole and one byte per write.
func TestProxyHeaderCarriesTheClientAddress(t *testing.T) {
	p := startProxied(t, "127.0.0.0/8")
	for _, c := range []struct {
		name    string
		version byte
		src     string
		split   bool
	}{
		{"v2", 2, "203.0.113.7:40000", false},
		{"v1", 1, "198.51.100.23:51515", false},
		{"v2 IPv6", 2, "[2001:db8::7]:443", false},
		{"v2 one byte per write", 2, "203.0.113.8:40001", true},
		{"v1 one byte per write", 1, "203.0.113.9:40002", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn := p.dial(t)
			conn.SetNoDelay(true)
			hdr := piresBytes(t, c.version, c.src)
			if c.split {
				for i := range hdr {
					if _, err := conn.Write(hdr[i : i+1]); err != nil {
						t.Fatal(err)
					}
					time.Sleep(2 * time.Millisecond) // separate segments, separate reads
				}
			} else if _, err := conn.Write(hdr); err != nil {
				t.Fatal(err)
			}
			p.roundTrip(t, conn)
			p.upstreamSaw(t, c.src)
		})
	}
	if n := p.up.accepted.Load(); n != 5 {
		t.Fatalf("%d upstream dials, want 5", n)
	}
}

// TestBadProxyHeadersAreClosedUnserved: every bad header, and a trusted
// source that sends TLS at once, is closed without an upstream dial and
// counted under its reason; an untrusted source that sends a header is
// refused, while an untrusted source speaking TLS is served.
func TestBadProxyHeadersAreClosedUnserved(t *testing.T) {
	v2 := func(cmd byte, length int) []byte {
		b := append([]byte("\r\n\r\n\x00\r\nQUIT\n"), cmd, 0x11, byte(length>>8), byte(length))
		return append(b, make([]byte, 12)...)
	}
	p := startProxied(t, "127.0.0.0/8")
	for _, c := range []struct {
		name string
		send []byte
		want HeaderRefusal
	}{
		{"v2 length beyond the bound", v2(0x21, proxyproto.MaxV2Length+1), HeaderTooLong},
		{"v1 without CRLF within 107 bytes", []byte("PROXY TCP4 " + strings.Repeat("9", 100)), HeaderTooLong},
		{"v2 unknown command", v2(0x2F, 12), HeaderInvalid},
		{"v1 bad address", []byte("PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n"), HeaderInvalid},
		{"TLS without a header", []byte{0x16, 0x03, 0x01, 0x00, 0x05}, HeaderMissing},
		{"garbage", []byte("GET / HTTP/1.1\r\n\r\n"), HeaderMissing},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := p.obs.count(c.want)
			conn := p.dial(t)
			conn.Write(c.send)
			closedUnserved(t, conn)
			eventually(t, 5*time.Second, "the refusal counted", func() bool { return p.obs.count(c.want) == before+1 })
		})
	}
	t.Run("closed within the header", func(t *testing.T) {
		conn := p.dial(t)
		conn.Write([]byte("PROXY TCP4 1.2"))
		conn.CloseWrite()
		closedUnserved(t, conn)
		eventually(t, 5*time.Second, "the refusal counted", func() bool { return p.obs.count(HeaderTruncated) == 1 })
	})
	t.Run("health check: connect and close", func(t *testing.T) {
		conn := p.dial(t)
		conn.CloseWrite()
		closedUnserved(t, conn)
	})
	if n := p.up.accepted.Load(); n != 0 {
		t.Fatalf("%d upstream dials for refused headers", n)
	}
	// One rate-limited line per reason, each with its count.
	eventually(t, 5*time.Second, "the refusals logged", func() bool {
		return strings.Contains(p.logs.String(), `"message":"connection closed: an invalid PROXY protocol header"`)
	})
	if m, tr := p.obs.count(HeaderMissing), p.obs.count(HeaderTruncated); m != 2 || tr != 1 {
		t.Fatalf("missing %d, truncated %d after a silent health check; want 2 and 1 (it is no refusal)", m, tr)
	}
	var lines int
	for _, l := range strings.Split(p.logs.String(), "\n") {
		var rec struct{ Message string }
		if json.Unmarshal([]byte(l), &rec) == nil && rec.Message == "connection closed" {
			lines++
		}
	}
	if lines != 0 {
		t.Fatalf("%d per-connection warnings for refused headers; they belong in the rate-limited lines:\n%s", lines, p.logs.String())
	}
}

func TestUntrustedSourceMaySendTLSButNoHeader(t *testing.T) {
	p := startProxied(t, "192.0.2.0/24") // the test's 127.0.0.1 is not trusted
	conn := p.dial(t)
	conn.Write(piresBytes(t, 2, "203.0.113.7:40000"))
	closedUnserved(t, conn)
	eventually(t, 5*time.Second, "the refusal counted", func() bool { return p.obs.count(HeaderUntrusted) == 1 })
	if n := p.up.accepted.Load(); n != 0 {
		t.Fatalf("an untrusted header was dialled upstream %d times", n)
	}
	plain := p.dial(t)
	p.roundTrip(t, plain)
	p.upstreamSaw(t, plain.LocalAddr().String())
}

// TestProxyHeaderThatNeverCompletesIsCut: a trusted source that stops in
// the middle of its header is closed at the ClientHello deadline.
func TestProxyHeaderThatNeverCompletesIsCut(t *testing.T) {
	p := startProxied(t, "127.0.0.0/8")
	start := time.Now()
	conn := p.dial(t)
	conn.Write(piresBytes(t, 2, "203.0.113.7:40000")[:20])
	closedUnserved(t, conn)
	if took := time.Since(start); took < 2*time.Second {
		t.Fatalf("cut after %s, before the 2s deadline", took)
	}
	eventually(t, 5*time.Second, "the timeout counted", func() bool { return p.obs.count(HeaderTimeout) == 1 })
}

// TestPerSourceLimitCountsTheCarriedAddress: behind a proxy every
// connection comes from the proxy's address, so the per-source handshake
// limit counts the address the header carries: two clients behind the
// same proxy hold a slot each, and a second connection from one of them
// evicts its own first.
func TestPerSourceLimitCountsTheCarriedAddress(t *testing.T) {
	obs := &evictionCounter{}
	p := startProxied(t, "127.0.0.0/8", func(c *Config) {
		c.Observer = obs
		c.MaxHandshakesPerSource = 1
	})
	open := func(src string) *net.TCPConn {
		c := p.dial(t)
		c.Write(piresBytes(t, 2, src))
		return c
	}
	a := open("203.0.113.1:1000")
	b := open("203.0.113.2:1000")
	eventually(t, 5*time.Second, "two handshakes from two carried sources", func() bool {
		n, _ := p.srv.guard.inFlight()
		p.srv.guard.mu.Lock()
		defer p.srv.guard.mu.Unlock()
		return n == 2 && len(p.srv.guard.sources) == 2
	})
	c := open("203.0.113.1:1001")
	closedUnserved(t, a)
	eventually(t, 5*time.Second, "the eviction counted", func() bool { return obs.evictions() == 1 })
	for _, still := range []net.Conn{b, c} {
		still.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := still.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("a connection of another carried source, or the newcomer, was closed: %v", err)
		}
	}
}

type evictionCounter struct {
	headerCounter
	evicted sync.Map
}

func (e *evictionCounter) Evicted(l Limit) {
	v, _ := e.evicted.LoadOrStore(l, new(int64))
	p := v.(*int64)
	e.headerCounter.mu.Lock()
	*p++
	e.headerCounter.mu.Unlock()
}

func (e *evictionCounter) evictions() int64 {
	v, ok := e.evicted.Load(LimitHandshakesPerSource)
	if !ok {
		return 0
	}
	e.headerCounter.mu.Lock()
	defer e.headerCounter.mu.Unlock()
	return *v.(*int64)
}
