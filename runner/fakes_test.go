package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// fakeServer stands in for a proxy.Server: it serves until its Shutdown
// finishes, and its connections stay open until finish is closed.
type fakeServer struct {
	serveErr   error         // what Serve returns at once; nil serves until stopped
	finish     chan struct{} // closed: the open connections end
	onShutdown func()        // called as Shutdown begins
	shutdowns  chan time.Time
	stopped    chan struct{} // closed when Shutdown is done
	stopOnce   sync.Once
	draining   atomic.Bool
	active     atomic.Int64
}

func newFakeServer(open int64) *fakeServer {
	f := &fakeServer{finish: make(chan struct{}), shutdowns: make(chan time.Time, 1), stopped: make(chan struct{})}
	f.active.Store(open)
	if open == 0 {
		close(f.finish)
	}
	return f
}

func (f *fakeServer) Serve(ctx context.Context) error {
	if f.serveErr != nil {
		return f.serveErr
	}
	select {
	case <-ctx.Done():
	case <-f.stopped:
	}
	return nil
}

func (f *fakeServer) Shutdown(ctx context.Context) error {
	if f.onShutdown != nil {
		f.onShutdown()
	}
	f.draining.Store(true)
	f.shutdowns <- time.Now()
	defer f.stopOnce.Do(func() { close(f.stopped) })
	select { // like proxy.Server, nothing open means done, deadline or not
	case <-f.finish:
		f.active.Store(0)
		return nil
	default:
	}
	select {
	case <-f.finish:
		f.active.Store(0)
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%d connection(s) reset: %w", f.active.Load(), ctx.Err())
	}
}

func (f *fakeServer) Active() int64  { return f.active.Load() }
func (f *fakeServer) Draining() bool { return f.draining.Load() }
func (f *fakeServer) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8443} }

// fakeCertificates counts reloads and fails them with err.
type fakeCertificates struct {
	err     error
	reloads atomic.Int32
	watched chan struct{} // closed when Watch returns
}

func (c *fakeCertificates) Reload() error { c.reloads.Add(1); return c.err }

// Watch reports one successful reload, as after a file changed, then waits.
func (c *fakeCertificates) Watch(ctx context.Context, onReload func(error)) {
	onReload(nil)
	<-ctx.Done()
	close(c.watched)
}

// fakeTarget records how often it was asked to re-resolve and when it was
// told to stop.
type fakeTarget struct {
	every   chan time.Duration
	stopped chan struct{}
}

func (t *fakeTarget) KeepResolved(every time.Duration, stop <-chan struct{}) {
	t.every <- every
	<-stop
	close(t.stopped)
}

func (t *fakeTarget) String() string { return "upstream.test:8080" }

// fakeStatus records the order of its Serve and Close.
type fakeStatus struct {
	events chan string
	closed chan struct{}
}

func (s *fakeStatus) Serve() error { s.events <- "serve"; <-s.closed; return nil }

func (s *fakeStatus) Close(ctx context.Context) error {
	s.events <- "close"
	close(s.closed)
	return nil
}

// logBuffer collects log lines from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness runs a Runner in the background with an injected signal channel.
type harness struct {
	r    *Runner
	sigs chan os.Signal // nil on the process's signals
	log  *logBuffer
	done chan error
}

// start runs o with signals from h.sigs and waits until the runner reports
// ready.
func start(t *testing.T, o Options) *harness {
	t.Helper()
	sigs := make(chan os.Signal, 4)
	o.Signals = sigs
	h := startWithSignals(t, o)
	h.sigs = sigs
	return h
}

// startWithSignals runs o as it is: with o.Signals nil, on the process's
// signals.
func startWithSignals(t *testing.T, o Options) *harness {
	t.Helper()
	h := &harness{log: &logBuffer{}, done: make(chan error, 1)}
	o.Log = zerolog.New(h.log)
	h.r = New(o)
	go func() { h.done <- h.r.Run(context.Background()) }()
	waitFor(t, "the runner to be ready", h.r.Ready)
	return h
}

// result waits for Run to return.
func (h *harness) result(t *testing.T, within time.Duration) error {
	t.Helper()
	select {
	case err := <-h.done:
		return err
	case <-time.After(within):
		t.Fatalf("Run still running after %s; log:\n%s", within, h.log)
		return nil
	}
}

// stillRunning fails the test if Run returns within d.
func (h *harness) stillRunning(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case err := <-h.done:
		t.Fatalf("Run returned %v early; log:\n%s", err, h.log)
	case <-time.After(d):
	}
}

func (h *harness) logged(t *testing.T, msgs ...string) {
	t.Helper()
	for _, m := range msgs {
		if !strings.Contains(h.log.String(), m) {
			t.Errorf("log lacks %q:\n%s", m, h.log)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func received[T any](t *testing.T, what string, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(2 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

var errBadPEM = errors.New("bad PEM")
