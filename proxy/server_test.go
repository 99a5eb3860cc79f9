package proxy

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/moat-proxy/moat/upstream"
)

// TestCallsAfterServeReturnDoNotHang: once Serve has returned, the calls
// that ask the loops for something (HeldBytes, Shutdown) answer at once
// instead of waiting for loops that will never run their task.
func TestCallsAfterServeReturnDoNotHang(t *testing.T) {
	up := startUpstream(t, "tcp", "127.0.0.1:0", echo)
	cert, _ := serverCert(t)
	listen, _ := upstream.ParseTarget("127.0.0.1:0")
	tgt, err := upstream.ParseTarget(up.addr())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{
		Mode: ModeServer, Listen: listen, Target: tgt,
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
