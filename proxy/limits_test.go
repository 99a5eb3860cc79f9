package proxy

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestHandshakeRateShedsFlood: over --max-handshake-rate new connections
// are closed at accept, while an established connection keeps echoing.
func TestHandshakeRateShedsFlood(t *testing.T) {
	up := startUpstream(t, "tcp", "127.0.0.1:0", echo)
	srv, ccfg := startServer(t, up.addr(), func(c *Config) { c.HandshakeRate = 5 })
	established := dialTLS(t, srv, ccfg)
	ok, shed := 0, 0
	for i := 0; i < 40; i++ {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", srv.Addr().String(), ccfg)
		if err != nil {
			shed++
			continue
		}
		ok++
		c.Close()
	}
	t.Logf("flood of 40: %d handshakes admitted, %d shed", ok, shed)
	if shed == 0 || ok > 10 {
		t.Fatalf("rate 5/s admitted %d of 40 connections at once", ok)
	}
	established.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(established, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("established connection during the flood: %q %v", buf, err)
	}
}

// clientHelloRecord returns the first flight of a real crypto/tls client.
func clientHelloRecord(t testing.TB) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go tls.Client(a, &tls.Config{ServerName: "localhost"}).Handshake()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// waitInFlight polls the guard until n handshakes are in flight.
func waitInFlight(t testing.TB, srv *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _ := srv.guard.inFlight()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d handshakes in flight, want %d", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMaxHandshakesEvictsWaitingClients: with the in-flight cap held by
// connections that sent part of a ClientHello, a new client evicts the
// oldest of them (reset) and gets through; with the cap held by clients
// whose ClientHello was answered, a new client is refused, and gets
// through once those time out.
func TestMaxHandshakesEvictsWaitingClients(t *testing.T) {
	up := startUpstream(t, "tcp", "127.0.0.1:0", echo)
	srv, ccfg := startServer(t, up.addr(), func(c *Config) {
		c.MaxHandshakes = 3
		c.HandshakeTimeout = 500 * time.Millisecond
	})
	var waiting []net.Conn
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte{0x16, 0x03, 0x01})
		waitInFlight(t, srv, i+1)
		waiting = append(waiting, c)
	}
	c := dialTLS(t, srv, ccfg)
	c.Write([]byte("x"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("a client over a cap held by partial ClientHellos: %v", err)
	}
	c.Close()
	waiting[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := waiting[0].Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("the oldest waiting connection: read %v, want reset by its eviction", err)
	}
	for _, w := range waiting[1:] {
		w.Close()
	}
	waitInFlight(t, srv, 0)

	hello := clientHelloRecord(t)
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(hello) // answered, then never continued
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != nil {
			t.Fatalf("no ServerHello: %v", err)
		}
	}
	waitInFlight(t, srv, 3)
	if c, err := tls.Dial("tcp", srv.Addr().String(), ccfg); err == nil {
		c.Close()
		t.Fatal("a fourth handshake was admitted over a cap held by answered handshakes")
	}
	waitInFlight(t, srv, 0) // the stalled ones reach the handshake timeout
	c = dialTLS(t, srv, ccfg)
	c.Write([]byte("x"))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("after the stalled handshakes timed out: %v", err)
	}
}

// TestUpstreamHeaderComesFirst: the configured header reaches the upstream
// before any plaintext, built from the real client address.
func TestUpstreamHeaderComesFirst(t *testing.T) {
	got := make(chan string, 1)
	up := startUpstream(t, "tcp", "127.0.0.1:0", func(c net.Conn) {
		b, _ := io.ReadAll(c)
		got <- string(b)
	})
	srv, ccfg := startServer(t, up.addr(), func(c *Config) {
		c.UpstreamHeader = func(client, local netip.AddrPort, cs *tls.ConnectionState) []byte {
			return []byte("HDR " + client.String() + " " + local.String() + " " + tls.VersionName(cs.Version) + "\n")
		}
	})
	c := dialTLS(t, srv, ccfg)
	c.Write([]byte("payload"))
	c.CloseWrite()
	want := "HDR " + c.LocalAddr().String() + " " + srv.Addr().String() + " TLS 1.3\npayload"
	select {
	case s := <-got:
		if s != want {
			t.Fatalf("upstream got %q, want %q", s, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("upstream got nothing")
	}
}

// syncBuffer is a log sink the loops and the test may use at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestLimitLogCountsEveryRefusal: a burst of refusals is logged at most once
// a second per loop, and the counts of those lines add up to every refused
// connection, the tail of the burst included (it is flushed once the
// interval is over, with no further refusal to trigger it).
func TestLimitLogCountsEveryRefusal(t *testing.T) {
	up := startUpstream(t, "tcp", "127.0.0.1:0", echo)
	logs := &syncBuffer{}
	srv, _ := startServer(t, up.addr(), func(c *Config) {
		c.MaxConns = 1
		c.Log = zerolog.New(logs).Level(zerolog.WarnLevel)
	})
	holder, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	eventually(t, 5*time.Second, "the holder admitted", func() bool { return srv.Active() == 1 })
	const burst = 50
	start := time.Now()
	for i := 0; i < burst; i++ {
		c, err := net.Dial("tcp", srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("a connection over --max-concurrent-conns was served")
		}
		c.Close()
	}
	sum, lines := 0, 0
	deadline := time.Now().Add(3 * limitLogEvery)
	for time.Now().Before(deadline) && sum < burst {
		time.Sleep(50 * time.Millisecond)
		sum, lines = 0, 0
		for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var rec struct {
				Count   int    `json:"count"`
				Message string `json:"message"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && strings.HasPrefix(rec.Message, "connection refused: max-conns reached") {
				sum += rec.Count
				lines++
			}
		}
	}
	if sum != burst {
		t.Fatalf("refusal lines count %d refusals, want %d:\n%s", sum, burst, logs.String())
	}
	// One line at the first refusal, then at most one per elapsed second,
	// per loop.
	if max := len(srv.loops) * (2 + int(time.Since(start)/limitLogEvery)); lines > max {
		t.Fatalf("%d refusal lines for one burst, want at most %d (once a second per loop)", lines, max)
	}
}
