package e2e

import (
	"bytes"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Bulk transfers through moat client with one end stalled: backpressure
// mirrored from server mode.

// patternBlock is the repeating content of bulk transfers; its odd length
// makes a lost, doubled or shifted chunk show up as a mismatch.
var patternBlock = func() []byte {
	b := make([]byte, 1<<20+7)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}()

// writePattern writes total bytes of the pattern, counting as it goes.
func writePattern(w io.Writer, total int64, written *atomic.Int64) error {
	for off := int64(0); off < total; {
		start := int(off % int64(len(patternBlock)))
		chunk := patternBlock[start:min(len(patternBlock), start+int(total-off))]
		n, err := w.Write(chunk)
		off += int64(n)
		written.Add(int64(n))
		if err != nil {
			return err
		}
	}
	return nil
}

// readPattern reads to EOF and returns the count and the first offset that
// differs from the pattern (-1 if none).
func readPattern(r io.Reader) (int64, int64, error) {
	buf := make([]byte, 256<<10)
	var off int64
	bad := int64(-1)
	for {
		n, err := r.Read(buf)
		for got, at := buf[:n], off; len(got) > 0 && bad < 0; {
			start := int(at % int64(len(patternBlock)))
			want := patternBlock[start:min(len(patternBlock), start+len(got))]
			if !bytes.Equal(got[:len(want)], want) {
				bad = at
			}
			at += int64(len(want))
			got = got[len(want):]
		}
		off += int64(n)
		if err == io.EOF {
			return off, bad, nil
		}
		if err != nil {
			return off, bad, err
		}
	}
}

// waitStalled waits until counter has not moved for half a second.
func waitStalled(t testing.TB, c *atomic.Int64) int64 {
	t.Helper()
	last, still := int64(-1), 0
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		n := c.Load()
		if n != last {
			last, still = n, 0
			continue
		}
		if still++; still == 5 {
			return n
		}
	}
	t.Fatalf("transfer never stalled; %d bytes moved", c.Load())
	return 0
}

// bulkBytes is more than the socket buffers between writer and reader can
// hold even at their autotuning maximum (2 x 32 MiB receive + 2 x 4 MiB send
// here; the writer stalls after 8-10 MiB in practice), so a stall before the
// end is moat refusing to read.
const bulkBytes = 128 << 20

// TestClientBackpressure mirrors server mode: when one end stops reading,
// moat stops reading the other (the writer stalls long before the end of
// the transfer), and once the reader resumes every byte arrives in order.
func TestClientBackpressure(t *testing.T) {
	pki := newClientPKI(t)
	srv := startGoServer(t, serverConfig(pki.ca.Issue("127.0.0.1")))
	_, listen := startClient(t, srv.addr, "--cacert", pki.server.CA)

	for _, dir := range []string{"upload to a stalled server", "download to a stalled app"} {
		t.Run(dir, func(t *testing.T) {
			a := dialApp(t, "tcp", listen)
			sc := srv.next(t)
			var src io.WriteCloser = a.Conn.(*net.TCPConn)
			var dst io.Reader = sc.r
			if strings.HasPrefix(dir, "download") {
				src, dst = sc.Conn, a.r
			}
			var written atomic.Int64
			wrote := make(chan error, 1)
			go func() {
				err := writePattern(src, bulkBytes, &written)
				if err == nil {
					err = closeWrite(src)
				}
				wrote <- err
			}()
			n := waitStalled(t, &written)
			t.Logf("writer stalled after %d MiB", n>>20)
			if n >= bulkBytes {
				t.Fatalf("all %d bytes were written while nothing read them", n)
			}
			n, bad, err := readPattern(dst)
			if err != nil || n != bulkBytes || bad >= 0 {
				t.Fatalf("read %d of %d bytes, first mismatch at %d, err %v", n, bulkBytes, bad, err)
			}
			if err := <-wrote; err != nil {
				t.Fatal(err)
			}
		})
	}
}

func closeWrite(w io.WriteCloser) error {
	if cw, ok := w.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return w.Close()
}
