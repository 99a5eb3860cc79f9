package e2e

import (
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"
)

// burst opens n TLS connections through moat, in parallel, and returns
// them open.
func burst(t *testing.T, o *opsServer, n int) []*tls.Conn {
	t.Helper()
	conns := make([]*tls.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, err := o.dial()
				if err != nil {
					errs <- err
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		t.Fatalf("burst: %v", err)
	}
	return conns
}

// TestMemoryReturnedAfterConnectionBurst: after 3,000 TLS connections
// are opened through moat, held and closed, moat's RSS falls back at least
// half-way to where it was before, within 30 s (moat checks every 2 s and
// returns free heap at most every 10 s). Before moat returned freed heap
// itself, RSS could stay up for minutes, as long as the runtime's heap goal
// stayed high.
func TestMemoryReturnedAfterConnectionBurst(t *testing.T) {
	const n = 3000
	up := startUpstream(t, func(c net.Conn) { c.Read(make([]byte, 1)) })
	o := startOps(t, up.addr())
	pid := o.m.cmd.Process.Pid
	idle := rss(t, pid)
	conns := burst(t, o, n)
	for _, c := range conns {
		c.Write([]byte("x")) // the upstream side is dialled and read from
	}
	peak := rss(t, pid)
	for _, c := range conns {
		c.Close()
	}
	closed := time.Now()
	target := idle + (peak-idle)/2
	for rss(t, pid) > target {
		if time.Since(closed) > 30*time.Second {
			t.Fatalf("RSS %d MiB 30 s after %d connections closed: idle %d MiB, %d MiB with them open, want under %d MiB",
				rss(t, pid)>>20, n, idle>>20, peak>>20, target>>20)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("RSS %d MiB idle, %d MiB with %d connections open, %d MiB %.1f s after they closed",
		idle>>20, peak>>20, n, rss(t, pid)>>20, time.Since(closed).Seconds())
	if peak-idle < 16<<20 {
		t.Fatalf("%d connections added only %d MiB of RSS: the burst did not test anything", n, (peak-idle)>>20)
	}
}
