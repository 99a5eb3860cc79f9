package e2e

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

// clientHello returns the first flight of a real crypto/tls client: a
// ClientHello record for ServerName "localhost".
func clientHello(t testing.TB) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go tls.Client(a, &tls.Config{ServerName: "localhost"}).Handshake()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

// waitGauge polls /metrics until the sample of name satisfies ok, and
// returns it; it fails the test with the last value after d.
func (o *opsServer) waitGauge(t testing.TB, name string, d time.Duration, ok func(float64) bool) float64 {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		v := value(o.metrics(t), name, nil)
		if ok(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after %s", name, v, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestIdleConnectionsHoldNoBuffer: whatever a connection sent before going
// quiet — nothing, part of a ClientHello, or a finished handshake, an echo
// and the first bytes of the next record — moat holds no TLS buffer for it
// while it waits. Before, every connection that had read nothing since its
// last wakeup kept a 64 KiB input buffer: 4,096 silent connections pinned
// 263 MB.
func TestIdleConnectionsHoldNoBuffer(t *testing.T) {
	const each = 200
	up := startUpstream(t, upperEcho)
	o := startOps(t, up.addr())
	hello := clientHello(t)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", o.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		return c
	}
	for i := 0; i < each; i++ {
		dial()                                               // silent
		if _, err := dial().Write(hello[:100]); err != nil { // part of a ClientHello
			t.Fatal(err)
		}
		raw := dial()
		tc := tls.Client(raw, &tls.Config{RootCAs: o.roots, ServerName: "localhost"})
		if _, err := tc.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(tc, make([]byte, 4)); err != nil {
			t.Fatal(err)
		}
		if _, err := raw.Write([]byte{23, 3, 3}); err != nil { // the start of a record header
			t.Fatal(err)
		}
	}
	o.waitGauge(t, "moat_connections_active", 10*time.Second, func(v float64) bool { return v == 3*each })
	held := o.waitGauge(t, "moat_tls_buffer_bytes", 5*time.Second, func(v float64) bool { return v == 0 })
	t.Logf("%d idle connections (silent, partial ClientHello, established): %v bytes of TLS buffers held", 3*each, held)
}
