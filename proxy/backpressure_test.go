package proxy

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// heldBound is what one connection may hold in moat's own buffers: engine
// input (64 KiB), engine output (high water 64 KiB plus one batch of
// records), and one parked batch of plaintext per direction (64 KiB each).
const heldBound = 5 * 64 << 10

const backpressureBytes = 1 << 30

// waitStalled waits until counter stops moving, which is when every buffer
// between the writer and the stalled reader is full.
func waitStalled(t *testing.T, counter *atomic.Int64) int64 {
	t.Helper()
	last, still := int64(-1), 0
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		n := counter.Load()
		if n == last {
			if still++; still == 5 {
				return n
			}
			continue
		}
		last, still = n, 0
	}
	t.Fatalf("transfer never stalled; %d bytes moved", counter.Load())
	return 0
}

// sampleHeld watches what srv holds every 10 ms, for the whole transfer
// rather than only at the stall, and returns a func that stops it and
// reports the largest sample and how many were taken.
func sampleHeld(srv *Server) func() (int64, int) {
	stop, done := make(chan struct{}), make(chan struct{})
	var most int64
	var samples int
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				most = max(most, srv.HeldBytes())
				samples++
			}
		}
	}()
	return func() (int64, int) { close(stop); <-done; return most, samples }
}

// checkHeldThroughout fails the test if any sample exceeded the bound.
func checkHeldThroughout(t *testing.T, stop func() (int64, int)) {
	t.Helper()
	most, samples := stop()
	t.Logf("largest of %d samples of what moat held during the transfer: %d bytes (bound %d)", samples, most, heldBound)
	if samples < 10 {
		t.Fatalf("only %d samples of the held bytes were taken", samples)
	}
	if most > heldBound {
		t.Fatalf("moat held %d bytes at one point during the transfer, bound is %d", most, heldBound)
	}
}

// TestSlowUpstreamStopsReadingClient uploads 1 GiB to an upstream that
// stops reading: moat must stop reading the client, hold no more than its
// bound, and deliver every byte once the upstream reads again.
func TestSlowUpstreamStopsReadingClient(t *testing.T) {
	release := make(chan struct{})
	type result struct {
		n   int64
		bad int64
		err error
	}
	got := make(chan result, 1)
	up := startUpstream(t, "tcp", "127.0.0.1:0", func(c net.Conn) {
		<-release
		var r result
		r.bad = -1
		buf := make([]byte, 256<<10)
		for {
			n, err := c.Read(buf)
			if bad := checkPattern(buf[:n], r.n); bad >= 0 && r.bad < 0 {
				r.bad = bad
			}
			r.n += int64(n)
			if err != nil {
				if err != io.EOF {
					r.err = err
				}
				break
			}
		}
		got <- r
	})
	srv, ccfg := startServer(t, up.addr(), nil)
	cl := dialTLS(t, srv, ccfg)
	stopSampling := sampleHeld(srv)

	var written atomic.Int64
	wrote := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for off := int64(0); off < backpressureBytes; off += int64(len(buf)) {
			pattern(buf, off)
			if _, err := cl.Write(buf); err != nil {
				wrote <- err
				return
			}
			written.Add(int64(len(buf)))
		}
		wrote <- cl.CloseWrite()
	}()

	stalledAt := waitStalled(t, &written)
	held := srv.HeldBytes()
	t.Logf("client stalled after %d bytes; moat holds %d bytes (bound %d)", stalledAt, held, heldBound)
	if stalledAt >= backpressureBytes {
		t.Fatalf("the whole upload was accepted while the upstream did not read")
	}
	if held > heldBound {
		t.Fatalf("moat holds %d bytes for one stalled connection, bound is %d", held, heldBound)
	}
	close(release)
	if err := <-wrote; err != nil {
		t.Fatalf("client write: %v", err)
	}
	r := <-got
	if r.err != nil || r.n != backpressureBytes || r.bad >= 0 {
		t.Fatalf("upstream got %d bytes (want %d), first bad byte at %d, err %v", r.n, backpressureBytes, r.bad, r.err)
	}
	checkHeldThroughout(t, stopSampling)
}

// TestSlowClientStopsReadingUpstream downloads 1 GiB to a client that stops
// reading: moat must stop reading the upstream and deliver every byte once
// the client reads again.
func TestSlowClientStopsReadingUpstream(t *testing.T) {
	var written atomic.Int64
	wrote := make(chan error, 1)
	up := startUpstream(t, "tcp", "127.0.0.1:0", func(c net.Conn) {
		buf := make([]byte, 64<<10)
		for off := int64(0); off < backpressureBytes; off += int64(len(buf)) {
			pattern(buf, off)
			if _, err := c.Write(buf); err != nil {
				wrote <- err
				return
			}
			written.Add(int64(len(buf)))
		}
		wrote <- c.(*net.TCPConn).CloseWrite()
	})
	srv, ccfg := startServer(t, up.addr(), nil)
	cl := dialTLS(t, srv, ccfg)
	if err := cl.Handshake(); err != nil {
		t.Fatal(err)
	}
	stopSampling := sampleHeld(srv)

	stalledAt := waitStalled(t, &written)
	held := srv.HeldBytes()
	t.Logf("upstream stalled after %d bytes; moat holds %d bytes (bound %d)", stalledAt, held, heldBound)
	if stalledAt >= backpressureBytes {
		t.Fatalf("the whole download was accepted while the client did not read")
	}
	if held > heldBound {
		t.Fatalf("moat holds %d bytes for one stalled connection, bound is %d", held, heldBound)
	}
	var n int64
	buf := make([]byte, 256<<10)
	for {
		k, err := cl.Read(buf)
		if bad := checkPattern(buf[:k], n); bad >= 0 {
			t.Fatalf("byte %d differs", bad)
		}
		n += int64(k)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("client read after %d bytes: %v", n, err)
		}
	}
	if n != backpressureBytes {
		t.Fatalf("client got %d bytes, want %d", n, backpressureBytes)
	}
	if err := <-wrote; err != nil {
		t.Fatalf("upstream write: %v", err)
	}
	checkHeldThroughout(t, stopSampling)
}
