package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/moat-proxy/moat/endpoint"
)

// TestCallsAfterServeReturnDoNotHang: once Serve has returned, the calls
// that ask the loops for something (HeldBytes, Shutdown) answer at once
// instead of waiting for loops that will never run their task.
func TestCallsAfterServeReturnDoNotHang(t *testing.T) {
	up := startUpstream(t, "tcp", "127.0.0.1:0", echo)
	cert, _ := serverCert(t)
	listen, _ := endpoint.ParseTarget("127.0.0.1:0")
	tgt, err := endpoint.ParseTarget(up.addr())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{
		Mode: ModeServer, Listen: listen, Target: endpoint.NewResolver(tgt),
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}},
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	cancel()
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context was cancelled")
	}
	done := make(chan int64, 1)
	go func() {
		held := srv.HeldBytes()
		srv.Shutdown(context.Background())
		done <- held
	}()
	select {
	case held := <-done:
		if held != 0 {
			t.Fatalf("HeldBytes after Serve returned = %d, want 0", held)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("HeldBytes or Shutdown hung after Serve returned")
	}
	for _, l := range srv.loops {
		if l.post(func() {}) {
			t.Fatal("post accepted a task for a loop that has exited")
		}
	}
}

// panicOnce panics in the first Relayed call: a stand-in for a defect hit
// by one connection's data.
type panicOnce struct {
	nopObserver
	hit atomic.Bool
}

func (p *panicOnce) Relayed(int, int) {
	if !p.hit.Swap(true) {
		panic("injected defect")
	}
}

// TestPanicEndsOnlyItsConnection: a panic while relaying one connection's
// bytes resets that connection and is logged; the process and the other
// connections of the same loop carry on.
func TestPanicEndsOnlyItsConnection(t *testing.T) {
	up := startUpstream(t, "tcp", "127.0.0.1:0", echo)
	logs := &syncBuffer{}
	obs := &panicOnce{}
	srv, ccfg := startServer(t, up.addr(), func(c *Config) {
		c.Loops = 1
		c.Observer = obs
		c.Log = zerolog.New(logs).Level(zerolog.WarnLevel)
	})
	bystander := dialTLS(t, srv, ccfg)
	victim := dialTLS(t, srv, ccfg)
	victim.Write([]byte("boom"))
	victim.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := victim.Read(make([]byte, 4)); err == nil {
		t.Fatalf("the connection that hit the defect read %d bytes, want it ended", n)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the connection that hit the defect was left hanging")
	}
	if !obs.hit.Load() {
		t.Fatal("the injected defect was never hit")
	}
	for _, c := range []*tls.Conn{bystander, dialTLS(t, srv, ccfg)} {
		c.Write([]byte("ping"))
		buf := make([]byte, 4)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("another connection after the defect: %q %v", buf, err)
		}
	}
	if out := logs.String(); !strings.Contains(out, "injected defect") || !strings.Contains(out, "internal error") {
		t.Fatalf("the defect was not logged:\n%s", out)
	}
}

// TestSilentCloseLoggedAtDebug: a peer that connects and closes without a
// byte (a TCP health check) is logged at debug level, while a peer that sent
// something that is not TLS is still a warning.
func TestSilentCloseLoggedAtDebug(t *testing.T) {
	up := startUpstream(t, "tcp", "127.0.0.1:0", echo)
	logs := &syncBuffer{}
	srv, _ := startServer(t, up.addr(), func(c *Config) { c.Log = zerolog.New(logs).Level(zerolog.DebugLevel) })
	probe, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	probe.Close()
	junk, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	junk.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	io.Copy(io.Discard, junk)
	junk.Close()
	var silent, garbage string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && (silent == "" || garbage == ""); time.Sleep(20 * time.Millisecond) {
		for _, line := range strings.Split(logs.String(), "\n") {
			switch {
			case strings.Contains(line, "without sending a byte"):
				silent = line
			case strings.Contains(line, `"reason":"handshake"`):
				garbage = line
			}
		}
	}
	if !strings.Contains(silent, `"level":"debug"`) {
		t.Errorf("silent close logged as %q, want a debug line", silent)
	}
	if !strings.Contains(garbage, `"level":"warn"`) {
		t.Errorf("non-TLS bytes logged as %q, want a warning", garbage)
	}
	if up.accepted.Load() != 0 {
		t.Errorf("the upstream was dialled %d times for connections that never shook hands", up.accepted.Load())
	}
}

// TestNoDelayOnBothSockets: moat relays whatever arrives at once, so both
// of a connection's TCP sockets carry TCP_NODELAY (Nagle would hold a small
// reply back for up to a round trip); the client's socket also carries the
// configured TCP keepalive.
func TestNoDelayOnBothSockets(t *testing.T) {
	up := startUpstream(t, "tcp", "127.0.0.1:0", echo)
	srv, ccfg := startServer(t, up.addr(), func(c *Config) { c.KeepAlive = 45 * time.Second })
	c := dialTLS(t, srv, ccfg)
	c.Write([]byte("ping"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	type opts struct{ tls, pln, keepalive, idle, intvl, cnt, plnKeepalive int }
	got := make(chan []opts, len(srv.loops))
	for _, l := range srv.loops {
		l.post(func() {
			var all []opts
			seen := map[*conn]bool{}
			for _, c := range l.conns {
				if seen[c] {
					continue
				}
				seen[c] = true
				get := func(fd, level, opt int) int { v, _ := unix.GetsockoptInt(fd, level, opt); return v }
				all = append(all, opts{
					tls:          get(c.tls.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY),
					pln:          get(c.pln.fd, unix.IPPROTO_TCP, unix.TCP_NODELAY),
					keepalive:    get(c.tls.fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE),
					idle:         get(c.tls.fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE),
					intvl:        get(c.tls.fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL),
					cnt:          get(c.tls.fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT),
					plnKeepalive: get(c.pln.fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE),
				})
			}
			got <- all
		})
	}
	var conns []opts
	for range srv.loops {
		conns = append(conns, <-got...)
	}
	if len(conns) != 1 {
		t.Fatalf("found %d connections on the loops, want 1", len(conns))
	}
	if conns[0].tls != 1 || conns[0].pln != 1 {
		t.Fatalf("TCP_NODELAY: client socket %d, upstream socket %d; want 1 and 1", conns[0].tls, conns[0].pln)
	}
	// Keepalive is for the peer across the network only: 45 s of silence,
	// then probes every 15 s, three of them.
	if o := conns[0]; o.keepalive != 1 || o.idle != 45 || o.intvl != 15 || o.cnt != 3 || o.plnKeepalive != 0 {
		t.Fatalf("keepalive on the client socket: on=%d idle=%d interval=%d count=%d, on the upstream socket %d; want 1 45 15 3 and 0",
			o.keepalive, o.idle, o.intvl, o.cnt, o.plnKeepalive)
	}
}
