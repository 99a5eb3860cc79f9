package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
)

// legitClient is the client the attacks must not lock out: a new connection
// from 127.0.0.1, a full mTLS handshake and a 1 KiB echo round trip, one
// after another with a short pause, each bounded by a timeout.
type legitClient struct {
	mu       sync.Mutex
	lat      []time.Duration
	failures map[string]int
	firstErr string
}

// run loops until ctx ends.
func (l *legitClient) run(ctx context.Context, e *soakEnv, every, timeout time.Duration) {
	msg := make([]byte, 1024)
	patternAt(msg, 0)
	for ctx.Err() == nil {
		d, stage, err := legitOnce(ctx, e, msg, timeout)
		if ctx.Err() != nil {
			return // cut short by the end of the run, not by moat
		}
		l.mu.Lock()
		if err == nil {
			l.lat = append(l.lat, d)
		} else {
			if l.failures == nil {
				l.failures = map[string]int{}
			}
			l.failures[stage+": "+errorClass(err)]++
			if l.firstErr == "" {
				l.firstErr = stage + ": " + err.Error()
			}
		}
		l.mu.Unlock()
		sleepCtx(ctx, every)
	}
}

// legitOnce is one attempt; stage says where a failure happened.
func legitOnce(ctx context.Context, e *soakEnv, msg []byte, timeout time.Duration) (time.Duration, string, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}
	raw, err := d.DialContext(ctx, "tcp", e.tlsAddr)
	if err != nil {
		return 0, "dial", err
	}
	defer raw.Close()
	_ = raw.SetDeadline(start.Add(timeout))
	c := tls.Client(raw, e.legitTLS)
	if err := c.HandshakeContext(ctx); err != nil {
		return 0, "handshake", err
	}
	if _, err := c.Write(append([]byte{modeEcho}, msg...)); err != nil {
		return 0, "echo", err
	}
	back := make([]byte, len(msg))
	if _, err := io.ReadFull(c, back); err != nil {
		return 0, "echo", err
	}
	if !bytes.Equal(back, msg) {
		return 0, "echo", errEchoMismatch
	}
	return time.Since(start), "", nil
}

var errEchoMismatch = errors.New("echo returned different bytes")

// counts returns successes and failures so far.
func (l *legitClient) counts() (ok, failed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range l.failures {
		failed += n
	}
	return len(l.lat), failed
}

// report summarises the attempts.
func (l *legitClient) report() legitReport {
	l.mu.Lock()
	defer l.mu.Unlock()
	lat := slices.Clone(l.lat)
	slices.Sort(lat)
	r := legitReport{OK: len(lat), Failures: l.failures, FirstError: l.firstErr}
	r.Attempts = r.OK
	for _, n := range l.failures {
		r.Attempts += n
	}
	if r.Attempts > 0 {
		r.SuccessRate = float64(r.OK) / float64(r.Attempts)
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	r.P50ms, r.P99ms = ms(percentile(lat, 50)), ms(percentile(lat, 99))
	if len(lat) > 0 {
		r.MaxMs = ms(lat[len(lat)-1])
	}
	return r
}

// watcher samples moat once a second: RSS and open descriptors from /proc,
// the cgroup's usage, and every fifth second go_goroutines from /metrics.
type watcher struct {
	pid     int
	status  string // status port address
	cg      *memCgroup
	legit   *legitClient
	start   time.Time
	mu      sync.Mutex
	samples []soakSample
	proc    processReport
}

func (w *watcher) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for i := 1; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s := soakSample{T: time.Since(w.start).Seconds(), RSS: vmRSS("/proc/" + strconv.Itoa(w.pid) + "/status"), FDs: w.fds()}
		if w.cg != nil {
			s.CgroupUsage = w.cg.usage()
		}
		if i%5 == 0 {
			s.Goroutines = w.goroutines()
		}
		s.LegitOK, s.LegitFailed = w.legit.counts()
		w.record(s)
	}
}

func (w *watcher) record(s soakSample) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.samples = append(w.samples, s)
	if s.RSS > 0 {
		w.proc.RSSMax, w.proc.RSSFinal = max(w.proc.RSSMax, s.RSS), s.RSS
	}
	w.proc.FDsMax = max(w.proc.FDsMax, s.FDs)
	if s.Goroutines > 0 {
		w.proc.GoroutinesMax, w.proc.GoroutinesFinal = max(w.proc.GoroutinesMax, s.Goroutines), s.Goroutines
	}
}

func (w *watcher) fds() int {
	d, err := os.Open("/proc/" + strconv.Itoa(w.pid) + "/fd")
	if err != nil {
		return 0
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	return len(names)
}

// goroutines reads go_goroutines from the status port, counting whether
// the scrape worked: the status port is under attack too.
func (w *watcher) goroutines() int {
	m, err := scrapeMetrics(w.status, "go_goroutines")
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.proc.ScrapesFailed++
		return 0
	}
	w.proc.ScrapesOK++
	return int(m["go_goroutines"])
}

// latest is the last sample, for progress lines.
func (w *watcher) latest() soakSample {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.samples) == 0 {
		return soakSample{}
	}
	return w.samples[len(w.samples)-1]
}

// scrapeMetrics fetches /metrics with a 2 s timeout.
func scrapeMetrics(addr string, prefixes ...string) (map[string]float64, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body, prefixes...), nil
}
