package tlsstate

import (
	"bytes"
	"crypto/tls"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestWriteBackpressureAndHalfClose: Write stops at HighWater before calling
// crypto/tls, so Output stays bounded; CloseWrite sends close_notify while the
// other direction keeps working; a clean close and a bare FIN are told apart.
func TestWriteBackpressureAndHalfClose(t *testing.T) {
	for _, v := range versions {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			testBackpressure(t, v)
			testHalfClose(t, v)
			testBareFIN(t, v)
		})
	}
}

func testBackpressure(t *testing.T, v uint16) {
	const highWater = 32 << 10
	s, c, l := openPair(t, v, Options{HighWater: highWater}, Options{})
	data := pattern(1<<20, 5)
	rest := data
	maxPending := 0
	for {
		n, err := s.Write(rest)
		maxPending = max(maxPending, s.Pending())
		if err == ErrWantWrite {
			break
		}
		if err != nil || n == 0 || n > 16<<10 {
			t.Fatalf("Write = %d, %v; want 1..16384 bytes", n, err)
		}
		rest = rest[n:]
	}
	// One record past the mark at most: 16 KiB plus record overhead.
	if maxPending < highWater || maxPending > highWater+16<<10+64 {
		t.Fatalf("max Pending = %d, want in [%d, %d]", maxPending, highWater, highWater+16<<10+64)
	}
	if n, err := s.Write(rest); n != 0 || err != ErrWantWrite {
		t.Fatalf("Write above HighWater = %d, %v; want ErrWantWrite", n, err)
	}
	// Drain and finish: everything arrives, in order.
	l.transfer(s, c, rest, data)
}

func testHalfClose(t *testing.T, v uint16) {
	s, c, l := openPair(t, v, Options{}, Options{})
	if err := c.CloseWrite(); err != nil {
		t.Fatalf("client CloseWrite: %v", err)
	}
	if _, err := c.Write([]byte("x")); err != ErrClosed {
		t.Fatalf("Write after CloseWrite = %v, want ErrClosed", err)
	}
	if c.Pending() == 0 {
		t.Fatal("CloseWrite queued nothing")
	}
	l.move(c, s)
	if n, err := s.Read(make([]byte, 16)); n != 0 || err != io.EOF || !s.PeerClosedCleanly() {
		t.Fatalf("server Read after close_notify = %d, %v clean=%v; want io.EOF, clean", n, err, s.PeerClosedCleanly())
	}
	// The reverse direction still works after the client's close_notify.
	l.send(s, c, pattern(5000, 6))
	if err := s.CloseWrite(); err != nil {
		t.Fatalf("server CloseWrite: %v", err)
	}
	if s.State() == Closed {
		t.Fatal("server Closed while its close_notify is unflushed")
	}
	l.move(s, c)
	if _, err := c.Read(make([]byte, 16)); err != io.EOF || !c.PeerClosedCleanly() {
		t.Fatalf("client Read = %v clean=%v; want io.EOF, clean", err, c.PeerClosedCleanly())
	}
	for _, e := range []*Engine{s, c} {
		if e.State() != Closed || e.Err() != nil {
			t.Fatalf("state=%v err=%v after both half-closes, want Closed", e.State(), e.Err())
		}
	}
}

func testBareFIN(t *testing.T, v uint16) {
	s, c, l := openPair(t, v, Options{}, Options{})
	msg := []byte("last words")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	l.move(c, s)
	s.FeedEOF()
	buf := make([]byte, 64)
	n, err := s.Read(buf)
	if err != nil || !bytes.Equal(buf[:n], msg) {
		t.Fatalf("Read = %q, %v; want the data before the FIN", buf[:n], err)
	}
	if _, err := s.Read(buf); err != io.EOF || s.PeerClosedCleanly() {
		t.Fatalf("Read at FIN = %v clean=%v; want io.EOF, not clean", err, s.PeerClosedCleanly())
	}
	if _, err := s.Write([]byte("reply")); err != nil {
		t.Fatalf("Write after a bare FIN: %v", err)
	}
}

// TestIdleEngineHoldsNoBuffers: once input is used up and output flushed, an
// engine holds no pooled buffer and no goroutine.
func TestIdleEngineHoldsNoBuffers(t *testing.T) {
	before := runtime.NumGoroutine()
	s, c, l := openPair(t, tls.VersionTLS13, Options{}, Options{})
	l.send(c, s, pattern(100<<10, 7))
	l.send(s, c, pattern(100<<10, 8))
	for name, e := range map[string]*Engine{"server": s, "client": c} {
		if e.bio.in != nil || e.bio.out != nil || e.bio.wk != nil || e.Buffered() != 0 {
			t.Fatalf("idle %s holds in=%v out=%v worker=%v buffered=%d", name, e.bio.in != nil, e.bio.out != nil, e.bio.wk != nil, e.Buffered())
		}
	}
	waitGoroutines(t, before)

	// The input buffer stays while the caller holds InputSpace, and goes on Commit.
	space := s.InputSpace()
	if len(space) != inputCap || s.bio.in == nil {
		t.Fatalf("InputSpace = %d bytes, want %d", len(space), inputCap)
	}
	if _, err := s.Read(make([]byte, 8)); err != ErrWantRead || s.bio.in == nil {
		t.Fatalf("Read between InputSpace and Commit = %v, released=%v", err, s.bio.in == nil)
	}
	s.Commit(0)
	if s.bio.in != nil {
		t.Fatal("empty input buffer kept after Commit(0)")
	}
}

// TestCloseStopsParkedWorkers: engines parked mid-handshake each hold a
// goroutine; Close ends it, and every call after Close says ErrClosed.
func TestCloseStopsParkedWorkers(t *testing.T) {
	p := testPKI(t)
	srvCfg, cliCfg := p.configs(tls.VersionTLS13, p.small, false)
	hello := clientHello(t, cliCfg)
	before, workersBefore := runtime.NumGoroutine(), handshakeWorkers()
	var engines []*Engine
	for range 50 {
		s := Server(srvCfg, Options{})
		s.Feed(hello[:len(hello)-1])
		if err := s.Handshake(); err != ErrWantRead {
			t.Fatalf("Handshake = %v", err)
		}
		engines = append(engines, s)
	}
	// Count the workers themselves: the total number of goroutines also
	// moves with whatever earlier tests left winding down.
	if got := handshakeWorkers() - workersBefore; got < 50 {
		t.Fatalf("%d parked handshake workers, want 50", got)
	}
	for _, s := range engines {
		s.Close()
		if s.State() != Closed || s.bio.in != nil || s.bio.wk != nil {
			t.Fatalf("after Close: state=%v input=%v worker=%v", s.State(), s.bio.in != nil, s.bio.wk != nil)
		}
		if _, err := s.Read(make([]byte, 1)); err != ErrClosed {
			t.Fatalf("Read after Close = %v", err)
		}
		if _, err := s.Write([]byte("x")); err != ErrClosed {
			t.Fatalf("Write after Close = %v", err)
		}
		if s.Handshake() != ErrClosed || s.Feed([]byte{1}) != 0 || len(s.InputSpace()) != 0 {
			t.Fatal("input accepted after Close")
		}
	}
	waitGoroutines(t, before)
	// Ours are gone; a worker an earlier test left winding down may still
	// be counted for a moment, so wait for the count to come back.
	for deadline := time.Now().Add(5 * time.Second); handshakeWorkers() > workersBefore; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d handshake workers left after Close, %d before", handshakeWorkers(), workersBefore)
		}
	}
}

// handshakeWorkers counts the goroutines running handshakeWorker.
func handshakeWorkers() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "tlsstate.handshakeWorker(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// TestCloseWriteDuringHandshakeIsOwed: a CloseWrite that comes while the
// handshake runs (say the upstream closed early) cannot be sent yet; the
// engine owes it and queues close_notify as soon as the handshake is done.
func TestCloseWriteDuringHandshakeIsOwed(t *testing.T) {
	p := testPKI(t)
	srvCfg, cliCfg := p.configs(tls.VersionTLS13, p.small, false)
	s, c := Server(srvCfg, Options{}), Client(cliCfg, Options{})
	defer s.Close()
	defer c.Close()
	if err := c.CloseWrite(); err != nil || c.State() != Handshaking {
		t.Fatalf("CloseWrite before the handshake = %v, state=%v", err, c.State())
	}
	if _, err := c.Write([]byte("x")); err != ErrClosed {
		t.Fatalf("Write after CloseWrite = %v, want ErrClosed", err)
	}
	l := &link{t: t, a: c, b: s, window: 1 << 20}
	l.handshake()
	if n, err := s.Read(make([]byte, 8)); n != 0 || err != io.EOF || !s.PeerClosedCleanly() {
		t.Fatalf("server Read = %d, %v clean=%v; want the owed close_notify", n, err, s.PeerClosedCleanly())
	}
	l.send(s, c, []byte("the other direction still works"))
}
