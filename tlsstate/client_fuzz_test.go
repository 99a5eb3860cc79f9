package tlsstate

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"
)

// Modes of FuzzClientEngine, from the low bits of the input's first byte.
const (
	fuzzAfterOpen = 1 << iota // bytes arrive after a real TLS 1.2 handshake, not after the ClientHello
	fuzzTLS13                 // the client offers TLS 1.3 too (ClientHello mode only)
)

// FuzzClientEngine feeds arbitrary server bytes to a client engine whose
// tls.Config renegotiates freely. The first byte picks the mode: straight
// after the engine's real ClientHello, or after a real TLS 1.2 handshake,
// where record headers are in the clear and a handshake-type one sends the
// engine into its renegotiation path. The rest is chunked as in
// FuzzServerEngine. The engine must never panic, block, yield plaintext the
// server never sent, or let its buffers grow; each Read must want input or
// fail; and once the input ends, a Read must fail.
func FuzzClientEngine(f *testing.F) {
	p := testPKI(f)
	srvCfg, cli12 := p.configs(tls.VersionTLS12, p.small, false)
	srvCfg.MaxVersion = tls.VersionTLS13
	cli12.Renegotiation = tls.RenegotiateFreelyAsClient
	cli13 := cli12.Clone()
	cli13.MaxVersion = tls.VersionTLS13
	for _, mode := range []byte{0, fuzzTLS13} {
		flight := serverFlight(f, srvCfg, map[bool]*tls.Config{false: cli12, true: cli13}[mode&fuzzTLS13 != 0])
		f.Add(append([]byte{mode, 0xFF, 0xFF}, flight...))
		f.Add(append([]byte{mode, 0, 0}, flight...))
	}
	f.Add([]byte{fuzzAfterOpen, 0, 0, 22, 3, 3, 0, 4, 0, 0, 0, 0}) // a HelloRequest-sized handshake record
	f.Add([]byte{fuzzAfterOpen, 4, 0, 23, 3, 3, 0, 2, 1, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		watchdog := time.AfterFunc(10*time.Second, func() {
			panic(fmt.Sprintf("client engine blocked on input % x", data))
		})
		defer watchdog.Stop()
		var mode byte
		if len(data) > 0 {
			mode, data = data[0], data[1:]
		}
		cfg := cli12
		if mode&(fuzzTLS13|fuzzAfterOpen) == fuzzTLS13 {
			cfg = cli13
		}
		e := Client(cfg, Options{})
		defer e.Close()
		if mode&fuzzAfterOpen != 0 {
			s := Server(srvCfg, Options{})
			defer s.Close()
			(&link{t: t, a: e, b: s, window: 1 << 20}).handshake()
		} else if err := e.Handshake(); !errors.Is(err, ErrWantRead) || e.Pending() == 0 {
			t.Fatalf("first Handshake: %v with %d bytes of ClientHello", err, e.Pending())
		}
		e.Consume(e.Pending())
		for i, chunk := range fuzzChunks(data) {
			if i%2 == 0 {
				e.Feed(chunk)
			} else {
				e.Commit(copy(e.InputSpace(), chunk))
			}
			clientFuzzStep(t, e)
		}
		e.FeedEOF()
		clientFuzzStep(t, e)
		if _, err := e.Read(make([]byte, 16)); err == nil || errors.Is(err, ErrWantRead) {
			t.Fatalf("after EOF: Read = %v, state %v", err, e.State())
		}
		e.Close()
		if e.bio.wk != nil || e.bio.in != nil {
			t.Fatal("Close left a worker or an input buffer")
		}
	})
}

// clientFuzzStep reads and writes as an event loop would, then flushes.
func clientFuzzStep(t *testing.T, e *Engine) {
	n, err := e.Read(make([]byte, 512))
	if n > 0 {
		t.Fatalf("Read returned %d bytes the server never sent", n)
	}
	if errors.Is(err, ErrPanic) || errors.Is(e.Err(), ErrPanic) {
		t.Fatalf("panic inside the engine: %v", e.Err())
	}
	if !errors.Is(err, ErrWantRead) && err != io.EOF && (e.State() != Failed || e.Err() == nil) {
		t.Fatalf("Read = %v, but state %v, Err %v", err, e.State(), e.Err())
	}
	if n, err := e.Write([]byte("x")); (err == nil) != (n == 1) {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if e.Pending() > outputBound {
		t.Fatalf("Output grew to %d bytes", e.Pending())
	}
	if e.Buffered() > inputCap+outputBound {
		t.Fatalf("Buffered = %d", e.Buffered())
	}
	e.Consume(e.Pending())
}

// serverFlight is a real server's answer to a ClientHello under cli: it
// cannot complete a later handshake (the client's random differs), but it
// takes the fuzzer past the parsing of ServerHello and Certificate.
func serverFlight(t testing.TB, srv, cli *tls.Config) []byte {
	c, s := Client(cli, Options{}), Server(srv, Options{})
	defer c.Close()
	defer s.Close()
	c.Handshake()
	s.Feed(c.Output())
	if err := s.Handshake(); !errors.Is(err, ErrWantRead) {
		t.Fatalf("server answering a ClientHello: %v", err)
	}
	return append([]byte(nil), s.Output()...)
}
