package proxy

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// TestFirehoseDoesNotStarveLoop: on a single loop, a connection streaming
// as fast as it can does not keep another connection's echoes waiting
// until it is done.
func TestFirehoseDoesNotStarveLoop(t *testing.T) {
	up := startUpstream(t, "tcp", "127.0.0.1:0", func(c net.Conn) {
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		if string(buf) == "sink" {
			io.Copy(io.Discard, c)
			return
		}
		c.Write(buf)
		echo(c)
	})
	srv, ccfg := startServer(t, up.addr(), func(c *Config) { c.Loops = 1 })
	hose := dialTLS(t, srv, ccfg)
	var streaming atomic.Bool
	var streamed atomic.Int64
	streaming.Store(true)
	hoseDone := make(chan struct{})
	go func() {
		defer close(hoseDone)
		hose.Write([]byte("sink"))
		buf := make([]byte, 256<<10)
		for end := time.Now().Add(20 * time.Second); time.Now().Before(end) && streaming.Load(); {
			if _, err := hose.Write(buf); err != nil {
				return
			}
			streamed.Add(int64(len(buf)))
		}
	}()
	// The firehose is flowing once more has gone through than the socket
	// buffers between it and the sink could hold.
	eventually(t, 10*time.Second, "the firehose flowing", func() bool { return streamed.Load() >= 16<<20 })

	pinger := dialTLS(t, srv, ccfg)
	start := time.Now()
	for i := 0; i < 50; i++ {
		pinger.Write([]byte("ping"))
		got := make([]byte, 4)
		pinger.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(pinger, got); err != nil {
			t.Fatalf("echo %d beside the firehose: %v", i, err)
		}
	}
	t.Logf("50 echoes beside a firehose on the same loop took %s", time.Since(start))
	select {
	case <-hoseDone:
		t.Fatal("the firehose ended before the echoes were answered: it was not running beside them")
	default:
	}
	streaming.Store(false)
	<-hoseDone
}
