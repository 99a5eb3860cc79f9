package tlsstate

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

var versions = []uint16{tls.VersionTLS12, tls.VersionTLS13}

// TestHandshakeThrough8KiBWindowWithLargeChain: a certificate flight of
// about 30 KiB crosses a window of 8192 bytes per step in both TLS versions,
// with and without client certificates, and data flows afterwards.
func TestHandshakeThrough8KiBWindowWithLargeChain(t *testing.T) {
	p := testPKI(t)
	if n := p.large.ChainBytes(); n <= 28<<10 {
		t.Fatalf("test chain is %d bytes, want > 28 KiB", n)
	}
	for _, v := range versions {
		for _, clientAuth := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/clientAuth=%v", tls.VersionName(v), clientAuth), func(t *testing.T) {
				srvCfg, cliCfg := p.configs(v, p.large, clientAuth)
				s, c := Server(srvCfg, Options{}), Client(cliCfg, Options{})
				defer s.Close()
				defer c.Close()
				// The server's first flight alone overflows the window.
				if err := c.Handshake(); err != ErrWantRead {
					t.Fatalf("client Handshake = %v", err)
				}
				s.Feed(c.Output())
				c.Consume(c.Pending())
				if err := s.Handshake(); err != ErrWantRead {
					t.Fatalf("server Handshake = %v", err)
				}
				if flight := s.Pending(); flight <= p.large.ChainBytes() || flight <= 8192 {
					t.Fatalf("server flight = %d bytes, want > chain (%d) and > 8192", flight, p.large.ChainBytes())
				}
				l := &link{t: t, a: c, b: s, window: 8192}
				l.handshake()
				checkOpen(t, s, c, v, clientAuth)
				l.send(c, s, pattern(40000, 1))
				l.send(s, c, pattern(40000, 2))
			})
		}
	}
}

func checkOpen(t *testing.T, s, c *Engine, v uint16, clientAuth bool) {
	t.Helper()
	for _, e := range []*Engine{s, c} {
		if e.State() != Open || e.Handshakes() != 1 {
			t.Fatalf("state=%v handshakes=%d, want Open after 1", e.State(), e.Handshakes())
		}
		if cs := e.ConnectionState(); cs.Version != v || !cs.HandshakeComplete {
			t.Fatalf("ConnectionState version=%x complete=%v", cs.Version, cs.HandshakeComplete)
		}
	}
	if got := len(s.ConnectionState().PeerCertificates); clientAuth != (got == 1) {
		t.Fatalf("server saw %d client certificates, clientAuth=%v", got, clientAuth)
	}
}

// TestHandshakeAndDataOneByteAtATime: every byte boundary is a resumable
// point, for the handshake with the large chain (TLS 1.2 and 1.3, with and
// without client certificates) and for data in both directions.
func TestHandshakeAndDataOneByteAtATime(t *testing.T) {
	p := testPKI(t)
	if n := p.large.ChainBytes(); n <= 28<<10 {
		t.Fatalf("test chain is %d bytes, want > 28 KiB", n)
	}
	for _, v := range versions {
		for _, clientAuth := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/clientAuth=%v", tls.VersionName(v), clientAuth), func(t *testing.T) {
				srvCfg, cliCfg := p.configs(v, p.large, clientAuth)
				s, c := Server(srvCfg, Options{}), Client(cliCfg, Options{})
				defer s.Close()
				defer c.Close()
				l := &link{t: t, a: c, b: s, window: 1}
				l.handshake()
				checkOpen(t, s, c, v, clientAuth)
				if l.steps < p.large.ChainBytes() || l.moved != l.steps {
					t.Fatalf("%d steps moved %d bytes for a %d-byte chain, want one byte per step and at least the chain",
						l.steps, l.moved, p.large.ChainBytes())
				}
				l.send(c, s, pattern(3000, 3))
				l.send(s, c, pattern(3000, 4))
			})
		}
	}
}

type countingCache struct {
	tls.ClientSessionCache
	puts atomic.Int32
}

func (c *countingCache) Put(key string, cs *tls.ClientSessionState) {
	c.puts.Add(1)
	c.ClientSessionCache.Put(key, cs)
}

// TestClientProcessesNewSessionTicketByteByByte: a TLS 1.3 ticket that
// arrives after the client's handshake is done is assembled byte by byte by
// Read, stored once complete, and the data after it arrives intact.
func TestClientProcessesNewSessionTicketByteByByte(t *testing.T) {
	p := testPKI(t)
	srvCfg, cliCfg := p.configs(tls.VersionTLS13, p.small, false)
	cache := &countingCache{ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	cliCfg.ClientSessionCache = cache
	s, c := Server(srvCfg, Options{}), Client(cliCfg, Options{})
	defer s.Close()
	defer c.Close()
	l := &link{t: t, a: c, b: s, window: 1 << 20}
	if c.Handshake() != ErrWantRead || !l.move(c, s) || s.Handshake() != ErrWantRead {
		t.Fatalf("no server flight: state=%v err=%v", s.State(), s.Err())
	}
	// The Go server sends its ticket at the end of its first flight, so the
	// client finishes its handshake before the ticket is complete.
	flight := bytes.Clone(s.Output())
	s.Consume(len(flight))
	buf := make([]byte, 64)
	feedByteByByte := func(wire []byte, ticketAtEnd bool) (got []byte, wantReads int) {
		for i := range wire {
			if c.Feed(wire[i:i+1]) != 1 {
				t.Fatalf("Feed refused byte %d", i)
			}
			n, err := c.Read(buf)
			got = append(got, buf[:n]...)
			if err == ErrWantRead {
				wantReads++
			} else if err != nil {
				t.Fatalf("byte %d: Read: %v", i, err)
			}
			if puts := cache.puts.Load(); ticketAtEnd && i < len(wire)-1 && puts != 0 {
				t.Fatalf("ticket stored at byte %d of %d, before it was complete", i, len(wire))
			}
		}
		return got, wantReads
	}
	if _, wantReads := feedByteByByte(flight, true); wantReads != len(flight) {
		t.Fatalf("%d ErrWantRead for %d single bytes of flight", wantReads, len(flight))
	}
	if c.State() != Open || cache.puts.Load() != 1 {
		t.Fatalf("after the flight: state=%v ticket Puts=%d, want Open and 1", c.State(), cache.puts.Load())
	}
	if !l.move(c, s) || s.Handshake() != nil {
		t.Fatalf("server did not finish on the client Finished: %v", s.Err())
	}
	msg := []byte("34 bytes of data after the ticket.")
	if n, err := s.Write(msg); n != len(msg) || err != nil {
		t.Fatalf("server Write = %d, %v", n, err)
	}
	wire := bytes.Clone(s.Output())
	s.Consume(len(wire))
	got, _ := feedByteByByte(wire, false)
	if !bytes.Equal(got, msg) || cache.puts.Load() != 1 {
		t.Fatalf("client read %q (Puts=%d), want %q", got, cache.puts.Load(), msg)
	}
}

// openPair returns two engines that completed a handshake in memory.
func openPair(t *testing.T, v uint16, so, co Options) (s, c *Engine, l *link) {
	t.Helper()
	p := testPKI(t)
	srvCfg, cliCfg := p.configs(v, p.small, false)
	s, c = Server(srvCfg, so), Client(cliCfg, co)
	t.Cleanup(s.Close)
	t.Cleanup(c.Close)
	l = &link{t: t, a: c, b: s, window: 1 << 20}
	l.handshake()
	// Let the TLS 1.3 client take the ticket so that later reads see data only.
	if _, err := c.Read(make([]byte, 1)); err != ErrWantRead {
		t.Fatalf("client idle Read = %v", err)
	}
	return s, c, l
}

// TestCorruptRecordProducesAlertOnReadPath: a record that fails to decrypt
// makes Read fail and queues a bad_record_mac alert, which reaches the peer.
func TestCorruptRecordProducesAlertOnReadPath(t *testing.T) {
	for _, v := range versions {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			s, c, _ := openPair(t, v, Options{}, Options{})
			if _, err := c.Write([]byte("soon to be corrupted")); err != nil {
				t.Fatal(err)
			}
			rec := bytes.Clone(c.Output())
			c.Consume(len(rec))
			rec[len(rec)-3] ^= 0x40
			s.Feed(rec)
			_, err := s.Read(make([]byte, 64))
			if err == nil || err == ErrWantRead || !strings.Contains(err.Error(), "bad record MAC") {
				t.Fatalf("server Read of a corrupt record = %v", err)
			}
			if s.State() != Failed || s.Err() != err {
				t.Fatalf("state=%v err=%v, want Failed with the Read error", s.State(), s.Err())
			}
			if s.Pending() == 0 {
				t.Fatal("no alert in Output after a read-path failure")
			}
			c.Feed(s.Output())
			s.Consume(s.Pending())
			_, err = c.Read(make([]byte, 64))
			if err == nil || !strings.Contains(err.Error(), "remote error: tls: bad record MAC") {
				t.Fatalf("peer Read = %v, want the flushed bad_record_mac alert", err)
			}
			if _, err := s.Write([]byte("x")); err != s.Err() {
				t.Fatalf("Write after failure = %v, want the sticky %v", err, s.Err())
			}
		})
	}
}

// TestTruncatedRecordAtEOF: a FIN inside a record is an error, never a panic
// nor a clean EOF, both after and during the handshake.
func TestTruncatedRecordAtEOF(t *testing.T) {
	for _, v := range versions {
		t.Run(tls.VersionName(v)+"/data", func(t *testing.T) {
			s, c, _ := openPair(t, v, Options{}, Options{})
			if _, err := c.Write([]byte("truncated")); err != nil {
				t.Fatal(err)
			}
			s.Feed(c.Output()[:c.Pending()-3])
			if _, err := s.Read(make([]byte, 64)); err != ErrWantRead {
				t.Fatalf("partial record Read = %v, want ErrWantRead", err)
			}
			s.FeedEOF()
			_, err := s.Read(make([]byte, 64))
			if !errors.Is(err, io.ErrUnexpectedEOF) || s.State() != Failed || s.PeerClosedCleanly() {
				t.Fatalf("Read = %v, state=%v clean=%v; want io.ErrUnexpectedEOF, Failed", err, s.State(), s.PeerClosedCleanly())
			}
			checkDead(t, s, nil)
		})
		t.Run(tls.VersionName(v)+"/handshake", func(t *testing.T) {
			p := testPKI(t)
			srvCfg, cliCfg := p.configs(v, p.small, false)
			hello := clientHello(t, cliCfg)
			before := runtime.NumGoroutine()
			s := Server(srvCfg, Options{})
			defer s.Close()
			s.Feed(hello[:len(hello)/2])
			if err := s.Handshake(); err != ErrWantRead {
				t.Fatalf("half a ClientHello: Handshake = %v", err)
			}
			s.FeedEOF()
			err := s.Handshake()
			if !errors.Is(err, io.ErrUnexpectedEOF) || s.State() != Failed {
				t.Fatalf("Handshake = %v, state=%v; want io.ErrUnexpectedEOF, Failed", err, s.State())
			}
			checkDead(t, s, hello)
			waitGoroutines(t, before)
		})
	}
}

// TestGarbageClientHelloQueuesAlert: a handshake record that does not parse
// fails the handshake and leaves crypto/tls's alert in Output to flush.
func TestGarbageClientHelloQueuesAlert(t *testing.T) {
	p := testPKI(t)
	srvCfg, _ := p.configs(tls.VersionTLS13, p.small, false)
	body := append([]byte{1, 0, 0, 40}, bytes.Repeat([]byte{0xA5}, 40)...) // ClientHello of garbage
	rec := append([]byte{22, 3, 1, 0, byte(len(body))}, body...)
	s := Server(srvCfg, Options{})
	defer s.Close()
	s.Feed(rec)
	err := s.Handshake()
	if err == nil || err == ErrWantRead || s.State() != Failed {
		t.Fatalf("Handshake = %v, state=%v; want a fatal error", err, s.State())
	}
	out := s.Output()
	if len(out) != 7 || out[0] != 21 || out[5] != 2 {
		t.Fatalf("Output = % x, want one plaintext fatal alert record", out)
	}
	if _, rerr := s.Read(make([]byte, 8)); rerr != err {
		t.Fatalf("Read after failure = %v, want %v", rerr, err)
	}

	// Bytes that are not TLS at all: crypto/tls fails without an alert.
	h := Server(srvCfg, Options{})
	defer h.Close()
	h.Feed([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	var rhe tls.RecordHeaderError
	if err := h.Handshake(); !errors.As(err, &rhe) {
		t.Fatalf("HTTP request as ClientHello: Handshake = %v, want tls.RecordHeaderError", err)
	}
}

// waitGoroutines waits until the goroutine count is back to at most want.
func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > want {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines = %d, want <= %d: a worker leaked", runtime.NumGoroutine(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPanicInHandshakeCallbackFailsOnlyThatEngine: a tls.Config callback
// that panics (a defect in the code behind it) fails that handshake with
// ErrPanic; the caller is not blocked, Close works, and another engine on
// the same config shakes hands.
func TestPanicInHandshakeCallbackFailsOnlyThatEngine(t *testing.T) {
	p := testPKI(t)
	srvCfg, cliCfg := p.configs(tls.VersionTLS13, p.small, false)
	var calls atomic.Int32
	cert := srvCfg.Certificates[0]
	srvCfg.Certificates = nil
	srvCfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		if calls.Add(1) == 1 {
			var m map[string]int
			//lint:ignore SA5000 the panic is the point: the engine must contain it
			m["boom"]++
		}
		return &cert, nil
	}
	bad := &link{t: t, a: Client(cliCfg, Options{}), b: Server(srvCfg, Options{}), window: 1 << 20}
	bad.a.Handshake()
	bad.move(bad.a, bad.b)
	err := bad.b.Handshake()
	if !errors.Is(err, ErrPanic) || !strings.Contains(err.Error(), "nil map") {
		t.Fatalf("server handshake after a panicking GetCertificate: %v, want ErrPanic with the panic's text", err)
	}
	if bad.b.State() != Failed {
		t.Fatalf("state %v after the panic, want Failed", bad.b.State())
	}
	if _, err := bad.b.Read(make([]byte, 1)); !errors.Is(err, ErrPanic) {
		t.Fatalf("Read after the panic: %v, want the same error", err)
	}
	bad.b.Close()
	bad.a.Close()

	good := &link{t: t, a: Client(cliCfg, Options{}), b: Server(srvCfg, Options{}), window: 1 << 20}
	good.handshake()
	good.send(good.a, good.b, []byte("after the panic"))
	good.a.Close()
	good.b.Close()
}
