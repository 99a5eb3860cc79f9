package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// rss returns a process's resident set size in bytes, from VmRSS in
// /proc/PID/status.
func rss(t testing.TB, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// headerFlood is one attacker: it sends a request line and then up to
// almost 1 MiB of header lines in 16 KiB pieces, never the blank line that
// ends the header, and holds the connection until moat closes it; then it
// connects again. (About 640 KB/s each, 250 MB/s in all: enough to run
// unlimited moat out of memory in a second or two, not so much that the
// flood's own CPU starves everything else on a 2-core machine.) Before the status port had limits, each such connection
// made moat buffer the whole megabyte.
type headerFlood struct {
	addr     string
	conns    atomic.Int64 // connections made
	sent     atomic.Int64 // header bytes written
	refusals atomic.Int64 // connections moat closed or answered early
}

func (f *headerFlood) attack(ctx context.Context) {
	line := "X-Pad: " + strings.Repeat("a", 1000) + "\r\n"
	piece := []byte(strings.Repeat(line, 16))
	for ctx.Err() == nil {
		c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", f.addr)
		if err != nil {
			sleepCtx(ctx, 50*time.Millisecond)
			continue
		}
		f.conns.Add(1)
		f.hold(ctx, c, piece)
		c.Close()
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

// hold writes the header on c until moat closes it or ctx ends.
func (f *headerFlood) hold(ctx context.Context, c net.Conn, piece []byte) {
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: moat\r\n"); err != nil {
		f.refusals.Add(1)
		return
	}
	for sent := 0; sent+len(piece) < 1000<<10; sent += len(piece) {
		if _, err := c.Write(piece); err != nil {
			f.refusals.Add(1)
			return
		}
		f.sent.Add(int64(len(piece)))
		if !sleepCtx(ctx, 25*time.Millisecond) {
			return
		}
	}
	// Stall: wait for whatever moat does with an unfinished header.
	c.Read(make([]byte, 1))
	if ctx.Err() == nil {
		f.refusals.Add(1)
	}
}

// sleepCtx sleeps for d and reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// TestStatusPortSurvivesHeaderFlood: 400 connections that trickle almost
// 1 MiB of headers each into the status port, reconnecting whenever moat
// closes them, neither run moat's memory up nor keep /healthz from
// answering; a complete 16 KiB header is refused with 431. Unlimited, the
// same flood took moat to about 450 MiB of RSS.
func TestStatusPortSurvivesHeaderFlood(t *testing.T) {
	const (
		attackers = 400
		attackFor = 6 * time.Second
		// rssBound is well above what moat reaches under the flood (about
		// 20 MiB measured) and far below what one unbounded second of it
		// costs; it is also half the chart's 128 MiB memory limit.
		rssBound = 64 << 20
	)
	up := startUpstream(t, upperEcho)
	o := startOps(t, up.addr())
	pid := o.m.cmd.Process.Pid
	if code, body := o.get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz before the flood: %d %s", code, body)
	}
	idle := rss(t, pid)

	ctx, cancel := context.WithTimeout(context.Background(), attackFor)
	defer cancel()
	flood := &headerFlood{addr: o.status}
	var wg sync.WaitGroup
	for range attackers {
		wg.Add(1)
		go func() { defer wg.Done(); flood.attack(ctx) }()
	}
	defer wg.Wait()
	defer cancel()

	peak, probes, failed, inARow := idle, 0, 0, 0
	probe := time.NewTicker(250 * time.Millisecond)
	defer probe.Stop()
	sample := time.NewTicker(20 * time.Millisecond)
	defer sample.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-sample.C:
			if peak = max(peak, rss(t, pid)); peak > rssBound {
				cancel()
				t.Fatalf("moat's RSS reached %d MiB under the flood (bound %d MiB, %d MiB idle)", peak>>20, rssBound>>20, idle>>20)
			}
		case <-probe.C:
			// The chart's liveness probe restarts moat after three failures
			// in a row, so that is what must not happen. Its 1 s timeout
			// is 2 s here (o.get): this test's own flood of goroutines
			// shares the 2-core machine with moat.
			probes++
			if code, body := o.get("/healthz"); code != http.StatusOK {
				failed++
				inARow++
				t.Logf("/healthz during the flood: %d %s", code, body)
				if inARow == 3 {
					t.Fatalf("/healthz failed three times in a row during the flood")
				}
				continue
			}
			inARow = 0
		}
	}
	wg.Wait()
	t.Logf("flood: %d connections, %d MiB of header sent, %d closed or answered by moat; /healthz %d of %d answered; RSS %d MiB idle, peak %d MiB (bound %d MiB)",
		flood.conns.Load(), flood.sent.Load()>>20, flood.refusals.Load(), probes-failed, probes, idle>>20, peak>>20, rssBound>>20)
	if flood.conns.Load() < attackers {
		t.Fatalf("only %d flood connections were made; the flood did not run", flood.conns.Load())
	}
	if failed == probes {
		t.Fatalf("/healthz never answered during the flood (%d tries)", probes)
	}
	if code, body := o.get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz after the flood: %d %s", code, body)
	}
	oversizeHeaderRefused(t, o.status)
}

// oversizeHeaderRefused sends one complete request with a 16 KiB header
// and wants 431, or the connection closed without an answer.
func oversizeHeaderRefused(t *testing.T, addr string) {
	t.Helper()
	c := dialRetry(t, "tcp", addr)
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET /healthz HTTP/1.1\r\nHost: moat\r\nX-Big: " + strings.Repeat("b", 16<<10) + "\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Logf("16 KiB header: write refused (%v)", err)
		return
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	switch {
	case err == nil:
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("16 KiB header: got %s, want 431", resp.Status)
		}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		t.Logf("16 KiB header: connection closed without an answer (%v)", err)
	default:
		t.Fatalf("16 KiB header: %v", err)
	}
}
