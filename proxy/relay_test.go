package proxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moat-proxy/moat/endpoint"
)

// TestRelayBothWaysTLS12AndTLS13 checks data both ways with each version.
func TestRelayBothWaysTLS12AndTLS13(t *testing.T) {
	up := startUpstream(t, "tcp", "127.0.0.1:0", echo)
	srv, ccfg := startServer(t, up.addr(), nil)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		cfg := ccfg.Clone()
		cfg.MinVersion, cfg.MaxVersion = v, v
		c := dialTLS(t, srv, cfg)
		msg := bytes.Repeat([]byte("moat "), 20000)
		go c.Write(msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("%s: echo mismatch, err %v", tls.VersionName(v), err)
		}
		if c.ConnectionState().Version != v {
			t.Fatalf("negotiated %x, want %x", c.ConnectionState().Version, v)
		}
	}
}

// TestUploadHalfClose: the client's close_notify reaches the upstream as
// EOF after all data, and the upstream can still answer afterwards.
func TestUploadHalfClose(t *testing.T) {
	up := startUpstream(t, "tcp", "127.0.0.1:0", func(c net.Conn) {
		data, err := io.ReadAll(c) // returns at EOF only
		if err != nil {
			return
		}
		sum := sha256.Sum256(data)
		c.Write(sum[:])
	})
	srv, ccfg := startServer(t, up.addr(), nil)
	c := dialTLS(t, srv, ccfg)
	data := make([]byte, 3<<20)
	rand.Read(data)
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read after half-close: %v", err)
	}
	want := sha256.Sum256(data)
	if !bytes.Equal(got, want[:]) {
		t.Fatalf("upstream saw different bytes: %x, want %x", got, want)
	}
}

// TestDownloadHalfClose: the upstream's FIN reaches the client as
// close_notify after all data, and the client can still send afterwards.
func TestDownloadHalfClose(t *testing.T) {
	data := make([]byte, 3<<20)
	rand.Read(data)
	gotLater := make(chan []byte, 1)
	up := startUpstream(t, "tcp", "127.0.0.1:0", func(c net.Conn) {
		c.Write(data)
		c.(*net.TCPConn).CloseWrite()
		later, _ := io.ReadAll(c)
		gotLater <- later
	})
	srv, ccfg := startServer(t, up.addr(), nil)
	c := dialTLS(t, srv, ccfg)
	got, err := io.ReadAll(c) // io.EOF only with close_notify
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("download differs: %d bytes, want %d", len(got), len(data))
	}
	if _, err := c.Write([]byte("after the upstream closed")); err != nil {
		t.Fatalf("write after download EOF: %v", err)
	}
	c.CloseWrite()
	select {
	case later := <-gotLater:
		if string(later) != "after the upstream closed" {
			t.Fatalf("upstream got %q after its EOF", later)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("upstream never saw the client's bytes sent after its EOF")
	}
}

// TestUpstreamResetIsNotACleanEOF: an upstream RST reaches the client as a
// reset, not as close_notify that would make a truncated reply look whole.
func TestUpstreamResetIsNotACleanEOF(t *testing.T) {
	delivered := make(chan struct{})
	up := startUpstream(t, "tcp", "127.0.0.1:0", func(c net.Conn) {
		c.Write([]byte("partial"))
		<-delivered
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	})
	srv, ccfg := startServer(t, up.addr(), nil)
	c := dialTLS(t, srv, ccfg)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, len("partial"))); err != nil {
		t.Fatalf("reading the bytes sent before the reset: %v", err)
	}
	close(delivered) // the reset comes after the data, not in a race with it
	_, err := io.ReadAll(c)
	if err == nil {
		t.Fatal("the client read a clean EOF after the upstream reset")
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client error %v, want connection reset", err)
	}
}

// TestGarbageNeverDialsUpstream: bytes that are not TLS end that connection
// with an alert, and the upstream is never dialled.
func TestGarbageNeverDialsUpstream(t *testing.T) {
	up := startUpstream(t, "tcp", "127.0.0.1:0", echo)
	srv, ccfg := startServer(t, up.addr(), nil)
	for _, garbage := range []string{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "\x16\x03\x01\x00\x05hello", "\x00\x01\x02\x03\x04\x05\x06"} {
		c, err := net.Dial("tcp", srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(garbage))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		reply, err := io.ReadAll(c)
		c.Close()
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("%q: connection not closed: %v", garbage, err)
		}
		if len(reply) > 0 && reply[0] != 0x15 {
			t.Fatalf("%q: reply is not a TLS alert: %x", garbage, reply)
		}
	}
	dialTLS(t, srv, ccfg).Write([]byte("x")) // the server still works
	if n := up.accepted.Load(); n > 1 {
		t.Fatalf("upstream dialled %d times for garbage connections", n-1)
	}
}

// TestUpstreamDownThenUp: while nothing listens the client's connection is
// reset; once the upstream is back the next client gets through, with no
// restart of moat.
func TestUpstreamDownThenUp(t *testing.T) {
	// A port nothing listens on; the kernel may hand the same free port to
	// moat's own listener, and moat would then relay to itself: pick
	// again until they differ.
	var addr string
	var srv *Server
	var ccfg *tls.Config
	for srv == nil || srv.Addr().String() == addr {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr = ln.Addr().String()
		ln.Close()
		srv, ccfg = startServer(t, addr, nil)
	}
	c := dialTLS(t, srv, ccfg)
	_, werr := c.Write([]byte("hello"))
	_, rerr := io.ReadAll(c)
	// The reset is reported once: to the write or, if it came later, the read.
	if !errors.Is(werr, syscall.ECONNRESET) && !errors.Is(werr, syscall.EPIPE) && !errors.Is(rerr, syscall.ECONNRESET) {
		t.Fatalf("client saw no reset while the upstream was down: write %v, read %v", werr, rerr)
	}
	up := startUpstream(t, "tcp", addr, echo)
	c2 := dialTLS(t, srv, ccfg)
	c2.Write([]byte("hello"))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c2, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("after the upstream came back: %q, %v", buf, err)
	}
	if up.accepted.Load() != 1 {
		t.Fatalf("upstream accepted %d", up.accepted.Load())
	}
}

// TestUnixSocketUpstream relays to a unix socket.
func TestUnixSocketUpstream(t *testing.T) {
	up := startUpstream(t, "unix", filepath.Join(t.TempDir(), "app.sock"), echo)
	srv, ccfg := startServer(t, up.addr(), nil)
	c := dialTLS(t, srv, ccfg)
	msg := bytes.Repeat([]byte("unix "), 100000)
	go func() { c.Write(msg); c.CloseWrite() }()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("unix upstream echo: %d bytes, err %v", len(got), err)
	}
}

// TestConcurrentClientsEcho: 200 clients each echo 1 MiB at once. The
// handshake deadlines are generous: 200 handshakes at once under -race on a
// busy machine took over the 10 s default.
func TestConcurrentClientsEcho(t *testing.T) {
	up := startUpstream(t, "tcp", "127.0.0.1:0", echo)
	srv, ccfg := startServer(t, up.addr(), func(c *Config) { c.HandshakeTimeout, c.ClientHelloTimeout = 2*time.Minute, 2*time.Minute })
	const clients, size = 200, 1 << 20
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := tls.Dial("tcp", srv.Addr().String(), ccfg)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			buf := make([]byte, size)
			pattern(buf, int64(i))
			go func() { c.Write(buf); c.CloseWrite() }()
			got, err := io.ReadAll(c)
			if err != nil || len(got) != size || checkPattern(got, int64(i)) >= 0 {
				errs <- errors.Join(err, errors.New("echo mismatch"))
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if up.accepted.Load() != clients {
		t.Fatalf("upstream accepted %d connections, want %d", up.accepted.Load(), clients)
	}
}

// TestHandshakeTimeoutClosesStalledClient: a client that sends part of a
// ClientHello and stops is closed after the handshake timeout.
func TestHandshakeTimeoutClosesStalledClient(t *testing.T) {
	up := startUpstream(t, "tcp", "127.0.0.1:0", echo)
	srv, _ := startServer(t, up.addr(), func(c *Config) { c.HandshakeTimeout = 300 * time.Millisecond })
	c, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01}) // a ClientHello header, then nothing
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadAll(c)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("stalled client not closed: %v", err)
	}
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Fatalf("closed after %s, before the 300ms handshake timeout", waited)
	}
	if srv.Active() != 0 {
		t.Fatalf("%d connections still open", srv.Active())
	}
}

// TestIdleTimeoutClosesQuietConnection closes a relayed connection that
// moved nothing for the idle timeout, with close_notify.
func TestIdleTimeoutClosesQuietConnection(t *testing.T) {
	up := startUpstream(t, "tcp", "127.0.0.1:0", echo)
	srv, ccfg := startServer(t, up.addr(), func(c *Config) { c.IdleTimeout = 300 * time.Millisecond })
	c := dialTLS(t, srv, ccfg)
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	io.ReadFull(c, buf)
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(buf); err != io.EOF {
		t.Fatalf("idle connection read: %v, want EOF", err)
	}
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Fatalf("closed after %s, before the idle timeout", waited)
	}
}

// TestMaxConnsRefusesExcess: over the limit new connections are closed at
// once while existing ones keep working.
func TestMaxConnsRefusesExcess(t *testing.T) {
	up := startUpstream(t, "tcp", "127.0.0.1:0", echo)
	srv, ccfg := startServer(t, up.addr(), func(c *Config) { c.MaxConns = 2 })
	a, b := dialTLS(t, srv, ccfg), dialTLS(t, srv, ccfg)
	a.Write([]byte("a"))
	b.Write([]byte("b"))
	one := make([]byte, 1)
	io.ReadFull(a, one)
	io.ReadFull(b, one)
	if _, err := tls.Dial("tcp", srv.Addr().String(), ccfg); err == nil {
		t.Fatal("third connection accepted over --max-concurrent-conns 2")
	}
	a.Write([]byte("still"))
	got := make([]byte, 5)
	if _, err := io.ReadFull(a, got); err != nil || string(got) != "still" {
		t.Fatalf("existing connection broken: %q %v", got, err)
	}
}

// TestDialTriesEveryAddress: when the target's first address refuses the
// connect, the next one is tried within the same connect deadline, as
// net.Dial does; when every address refuses, the client is reset once.
func TestDialTriesEveryAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatalf("Linux routes all of 127.0.0.0/8 to the loopback: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	up := startUpstream(t, "tcp", fmt.Sprintf("127.0.0.2:%d", port), echo)
	name, err := endpoint.ParseTarget(fmt.Sprintf("upstream.test:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	var answer []netip.Addr
	tgt := endpoint.NewResolverFunc(name, func(context.Context, string) ([]netip.Addr, error) { return answer, nil })
	pin := func(addrs ...netip.Addr) {
		answer = addrs
		if err := tgt.Resolve(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	pin(netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"))
	srv, ccfg := startServer(t, "127.0.0.1:1", func(c *Config) { c.Target = tgt })
	c := dialTLS(t, srv, ccfg)
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("through the second address: %q %v", buf, err)
	}
	if up.accepted.Load() != 1 {
		t.Fatalf("upstream on the second address accepted %d connections, want 1", up.accepted.Load())
	}

	pin(netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.3"))
	c = dialTLS(t, srv, ccfg)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(buf); err == nil {
		t.Fatal("a client was served although every address refused")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the client was left hanging when every address refused")
	}
}

// TestMaxConnLifetimeEndsBusyConnection: a connection that keeps moving
// bytes, so the idle timeout never fires, is reset at MaxConnLifetime;
// idle and lifetime share the connection's one timer, and activity that
// pushes the idle deadline out does not push the lifetime out with it.
func TestMaxConnLifetimeEndsBusyConnection(t *testing.T) {
	up := startUpstream(t, "tcp", "127.0.0.1:0", echo)
	srv, ccfg := startServer(t, up.addr(), func(c *Config) {
		c.IdleTimeout = 400 * time.Millisecond
		c.MaxConnLifetime = 1200 * time.Millisecond
	})
	c := dialTLS(t, srv, ccfg)
	buf := make([]byte, 4)
	deadline := time.Now().Add(30 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err = c.Write([]byte("ping")); err == nil {
			_, err = io.ReadFull(c, buf)
		}
		if err != nil {
			break
		}
		time.Sleep(100 * time.Millisecond) // well inside the idle timeout
	}
	if err == nil {
		t.Fatal("a busy connection outlived MaxConnLifetime by 30s")
	}
	if errors.Is(err, io.EOF) {
		t.Fatalf("ended with a clean close (%v); a lifetime cut resets", err)
	}
	if ReasonMaxLifetime.String() != "max lifetime" {
		t.Fatalf("reason word %q", ReasonMaxLifetime)
	}
	if tlsReset, plainReset := ReasonMaxLifetime.resets(orientation{}, false); !tlsReset || !plainReset {
		t.Fatal("a lifetime cut must reset both sides")
	}
}
