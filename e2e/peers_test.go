package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moat-proxy/moat/internal/testpki"
)

// tcpUpstream is a plaintext server on 127.0.0.1 run by the test.
type tcpUpstream struct {
	ln       net.Listener
	accepted atomic.Int64
}

// startUpstream serves handle on a fresh port until the test ends.
func startUpstream(t testing.TB, handle func(net.Conn)) *tcpUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveUpstream(t, ln, handle)
}

// serveUpstream serves handle on every connection ln accepts until the test
// ends, counting them.
func serveUpstream(t testing.TB, ln net.Listener, handle func(net.Conn)) *tcpUpstream {
	u := &tcpUpstream{ln: ln}
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

func (u *tcpUpstream) addr() string { return u.ln.Addr().String() }

// upperEcho answers every read with the same bytes in upper case, so the
// test can tell the upstream's answer from its own input in a peer's output.
func upperEcho(c net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			c.Write(bytes.ToUpper(buf[:n]))
		}
		if err != nil {
			if cw, ok := c.(interface{ CloseWrite() error }); ok && err == io.EOF {
				cw.CloseWrite() // TCP or unix: the half-close goes back
			}
			return
		}
	}
}

// serverFiles writes a CA-issued server certificate for localhost and
// 127.0.0.1 and returns its files.
func serverFiles(t testing.TB) testpki.Files {
	t.Helper()
	ca := testpki.NewCA()
	f, err := ca.Issue("localhost", "127.0.0.1").WritePEM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// tlsDialFiles connects a TLS client that trusts f's CA.
func tlsDialFiles(addr string, f testpki.Files) (*tls.Conn, error) {
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr, &tls.Config{RootCAs: roots, ServerName: "localhost"})
}
