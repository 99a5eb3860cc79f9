package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/moat-proxy/moat/endpoint"
	"github.com/moat-proxy/moat/internal/testpki"
)

var (
	certOnce sync.Once
	testCert tls.Certificate
	testPool *x509.CertPool
)

// serverCert is a certificate for 127.0.0.1 and localhost from a test CA,
// made once per test binary, with a pool holding that CA.
func serverCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	certOnce.Do(func() {
		ca := testpki.NewCA()
		testCert, testPool = ca.Issue("localhost", "127.0.0.1").TLS(), ca.Pool()
	})
	return testCert, testPool
}

// eventually polls cond until it holds, and fails the test if it does not
// within timeout: for state a test can observe but has no event to wait on.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, what)
		}
	}
}

// startServer runs a moat server in front of target and returns it with a
// client configuration that trusts it.
func startServer(t testing.TB, target string, edit func(*Config)) (*Server, *tls.Config) {
	t.Helper()
	cert, pool := serverCert(t)
	listen, _ := endpoint.ParseTarget("127.0.0.1:0")
	tgt, err := endpoint.ParseTarget(target)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Mode: ModeServer, Listen: listen, Target: endpoint.NewResolver(tgt),
		TLS: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	startServing(t, srv)
	return srv, &tls.Config{RootCAs: pool, ServerName: "localhost"}
}

// startServing runs srv until the test ends.
func startServing(t testing.TB, srv *Server) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// upstreamServer accepts plaintext connections and hands each to handle.
type upstreamServer struct {
	ln       net.Listener
	accepted atomic.Int64
}

func startUpstream(t testing.TB, network, addr string, handle func(net.Conn)) *upstreamServer {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	u := &upstreamServer{ln: ln}
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.accepted.Add(1)
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); handle(c) }()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return u
}

func (u *upstreamServer) addr() string {
	if u.ln.Addr().Network() == "unix" {
		return "unix:" + u.ln.Addr().String()
	}
	return u.ln.Addr().String()
}

// echo copies everything back, then closes its write side at EOF.
func echo(c net.Conn) {
	io.Copy(c, c)
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// dialTLS connects a TLS client to the server.
func dialTLS(t testing.TB, srv *Server, cfg *tls.Config) *tls.Conn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", srv.Addr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// pattern fills b with bytes that depend on their offset in the stream, so
// a lost, repeated or reordered chunk is detected.
func pattern(b []byte, off int64) {
	for i := range b {
		x := uint64(off + int64(i))
		b[i] = byte(x ^ x>>8 ^ x>>17)
	}
}

// checkPattern reports the first offset in b that breaks the pattern.
func checkPattern(b []byte, off int64) int64 {
	for i := range b {
		x := uint64(off + int64(i))
		if b[i] != byte(x^x>>8^x>>17) {
			return off + int64(i)
		}
	}
	return -1
}
