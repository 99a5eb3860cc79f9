package tlsstate

import (
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"testing"
)

// The benchmarks pair the engine with the same work done by two tls.Conns
// over net.Pipe, so the cost of the memory BIO and the worker hand-off shows
// as a ratio. TLS 1.3, ECDSA P-256, small certificate, both ends in process.

func BenchmarkEngineHandshake(b *testing.B) {
	p := testPKI(b)
	srvCfg, cliCfg := p.configs(tls.VersionTLS13, p.small, false)
	b.ReportAllocs()
	for b.Loop() {
		s, c := Server(srvCfg, Options{}), Client(cliCfg, Options{})
		l := &link{t: b, a: c, b: s, window: 1 << 20}
		l.handshake()
		s.Close()
		c.Close()
	}
}

func BenchmarkStdHandshakeNetPipe(b *testing.B) {
	p := testPKI(b)
	srvCfg, cliCfg := p.configs(tls.VersionTLS13, p.small, false)
	b.ReportAllocs()
	for b.Loop() {
		cc, sc := net.Pipe()
		s, c := tls.Server(sc, srvCfg), tls.Client(cc, cliCfg)
		errc := make(chan error, 1)
		go func() { errc <- s.Handshake() }()
		if err := c.Handshake(); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		cc.Close()
		sc.Close()
	}
}

const benchRecord = 1024

// BenchmarkEngineRecordRoundTrip: one record sealed by a server engine,
// moved, and opened by a client engine, per iteration. The reader's buffer
// is larger than the record, as the event loop's 64 KiB scratch is: a Read
// that fills its buffer exactly cannot know whether crypto/tls holds more
// plaintext, and pays one would-block probe (one 24-byte alloc) to find out.
func BenchmarkEngineRecordRoundTrip(b *testing.B) {
	p := testPKI(b)
	srvCfg, cliCfg := p.configs(tls.VersionTLS13, p.small, false)
	s, c := Server(srvCfg, Options{}), Client(cliCfg, Options{})
	defer s.Close()
	defer c.Close()
	l := &link{t: b, a: c, b: s, window: 1 << 20}
	l.handshake()
	c.Read(make([]byte, 1)) // the session ticket
	msg, buf := make([]byte, benchRecord), make([]byte, 64<<10)
	b.SetBytes(benchRecord)
	b.ReportAllocs()
	for b.Loop() {
		if n, err := s.Write(msg); n != benchRecord || err != nil {
			b.Fatalf("Write = %d, %v", n, err)
		}
		c.Feed(s.Output())
		s.Consume(s.Pending())
		if n, err := c.Read(buf); n != benchRecord || err != nil {
			b.Fatalf("Read = %d, %v", n, err)
		}
		if _, err := c.Read(buf); err != ErrWantRead {
			b.Fatalf("Read of nothing = %v", err)
		}
	}
}

func BenchmarkStdRecordRoundTrip(b *testing.B) {
	p := testPKI(b)
	srvCfg, cliCfg := p.configs(tls.VersionTLS13, p.small, false)
	cc, sc := net.Pipe()
	s, c := tls.Server(sc, srvCfg), tls.Client(cc, cliCfg)
	defer cc.Close()
	defer sc.Close()
	go s.Handshake()
	if err := c.Handshake(); err != nil {
		b.Fatal(err)
	}
	msg, buf := make([]byte, benchRecord), make([]byte, benchRecord)
	n := b.N
	go func() {
		for range n {
			if _, err := s.Write(msg); err != nil {
				return
			}
		}
	}()
	b.SetBytes(benchRecord)
	b.ReportAllocs()
	b.ResetTimer()
	for range n {
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIdleEngineHeap reports the heap an idle, open engine keeps
// (heap-B/engine): crypto/tls's own state, since the engine releases its
// buffers and worker when idle. Pairs exchange one small record each way
// first, as after a request.
func BenchmarkIdleEngineHeap(b *testing.B) {
	p := testPKI(b)
	srvCfg, cliCfg := p.configs(tls.VersionTLS13, p.small, false)
	var engines []*Engine
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for b.Loop() {
		s, c := Server(srvCfg, Options{}), Client(cliCfg, Options{})
		l := &link{t: b, a: c, b: s, window: 1 << 20}
		l.handshake()
		l.send(c, s, []byte("ping"))
		l.send(s, c, []byte("pong"))
		engines = append(engines, s, c)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(engines)), "heap-B/engine")
	for _, e := range engines {
		if e.bio.in != nil || e.bio.out != nil {
			b.Fatal("idle engine holds a buffer")
		}
		e.Close()
	}
}
