package proxy

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/moat-proxy/moat/endpoint"
)

// TestIdleTimeoutWithDataInFlightResets: when the idle timeout cuts a
// connection whose upload is stuck behind a stalled upstream, both peers
// see a reset, not an orderly end of a truncated stream.
func TestIdleTimeoutWithDataInFlightResets(t *testing.T) {
	upErr := make(chan error, 1)
	release := make(chan struct{})
	up := startUpstream(t, "tcp", "127.0.0.1:0", func(c net.Conn) {
		<-release
		_, err := io.Copy(io.Discard, c)
		upErr <- err
	})
	srv, ccfg := startServer(t, up.addr(), func(c *Config) { c.IdleTimeout = 500 * time.Millisecond })
	cl := dialTLS(t, srv, ccfg)
	var written atomic.Int64
	writeErr := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := cl.Write(buf); err != nil {
				writeErr <- err
				return
			}
			written.Add(int64(len(buf)))
		}
	}()
	waitStalled(t, &written)
	eventually(t, 10*time.Second, "the idle timeout cut the connection", func() bool { return srv.Active() == 0 })
	close(release)
	if err := <-upErr; !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("upstream read after the cut: %v, want connection reset", err)
	}
	// The client's pending write learns of the reset first; the reset is
	// reported once, so a read after it may see a plain EOF.
	select {
	case err := <-writeErr:
		if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
			t.Fatalf("client write after the cut: %v, want a reset", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the client's write never failed: the connection was not reset")
	}
}

// TestClientModeDialFailureResetsLocalClient: in client mode a TLS server
// that cannot be reached resets the local application's connection, so it
// cannot mistake the failure for an empty reply.
func TestClientModeDialFailureResetsLocalClient(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	listen, _ := endpoint.ParseTarget("127.0.0.1:0")
	target, _ := endpoint.ParseTarget(dead)
	srv, err := New(Config{Mode: ModeClient, Listen: listen, Target: endpoint.NewResolver(target),
		TLS: &tls.Config{ServerName: "localhost", MinVersion: tls.VersionTLS12},
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	startServing(t, srv)
	c, err := net.Dial("tcp", srv.Addr().String())
	if err == nil { // the reset can come before the dial even returns
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("local client: %v, want connection reset", err)
	}
}
