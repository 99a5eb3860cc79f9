package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestReadinessFailsAtTheSignalBeforeTheListenerCloses: a SIGTERM makes the
// runner not ready at once, while the server still accepts for the delay;
// only then is it shut down.
func TestReadinessFailsAtTheSignalBeforeTheListenerCloses(t *testing.T) {
	const delay = 300 * time.Millisecond
	srv := newFakeServer(0)
	h := start(t, Options{Services: []Service{{Server: srv}}, ShutdownDelay: delay, ShutdownTimeout: time.Second})
	readyAtShutdown := make(chan bool, 1)
	srv.onShutdown = func() { readyAtShutdown <- h.r.Ready() }

	signalled := time.Now()
	h.sigs <- syscall.SIGTERM
	waitFor(t, "readiness to fail", func() bool { return !h.r.Ready() })
	if flipped := time.Since(signalled); flipped > delay/2 {
		t.Errorf("readiness failed %s after the signal, want at once", flipped)
	}
	if srv.Draining() {
		t.Fatal("server already shutting down when readiness failed; want it accepting through the delay")
	}
	closed := received(t, "Shutdown", srv.shutdowns)
	if waited := closed.Sub(signalled); waited < delay {
		t.Errorf("Shutdown began %s after the signal, want after the %s delay", waited, delay)
	}
	if <-readyAtShutdown {
		t.Error("ready when Shutdown began")
	}
	if err := h.result(t, 2*time.Second); err != nil {
		t.Fatalf("Run = %v after a clean drain, want nil", err)
	}
	h.logged(t, "moat is listening", "shutting down: not ready", "listener closed; waiting for open connections", "moat stopped")
}

// TestDrainWaitsForOpenConnections: once the delay is over, Run waits for
// the connections still open and returns nil when they end in time.
func TestDrainWaitsForOpenConnections(t *testing.T) {
	srv := newFakeServer(2)
	h := start(t, Options{Services: []Service{{Server: srv}}, ShutdownDelay: 50 * time.Millisecond, ShutdownTimeout: time.Minute})
	h.sigs <- syscall.SIGINT
	received(t, "Shutdown", srv.shutdowns)
	h.stillRunning(t, 200*time.Millisecond)
	close(srv.finish)
	if err := h.result(t, 2*time.Second); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	h.logged(t, `"open_connections":2`)
}

// TestCutAtTheShutdownTimeoutIsAnError: connections still open when the
// shutdown timeout runs out make Run fail, so the process exits 1.
func TestCutAtTheShutdownTimeoutIsAnError(t *testing.T) {
	const timeout = 100 * time.Millisecond
	srv := newFakeServer(1)
	h := start(t, Options{Services: []Service{{Server: srv}}, ShutdownTimeout: timeout})
	h.sigs <- syscall.SIGTERM
	err := h.result(t, 2*time.Second)
	var cut *CutError
	if !errors.As(err, &cut) || cut.Timeout != timeout || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v, want a *CutError for %s wrapping context.DeadlineExceeded", err, timeout)
	}
	h.logged(t, "shutdown timeout reached; remaining connections reset")
}

// TestSecondSignalReturnsAtOnce: a second SIGTERM or SIGINT, during the
// delay or the drain, ends Run without waiting; a SIGHUP does not.
func TestSecondSignalReturnsAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delay time.Duration
	}{{"during the delay", time.Minute}, {"during the drain", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeServer(1)
			st := &fakeStatus{events: make(chan string, 4), closed: make(chan struct{})}
			h := start(t, Options{Services: []Service{{Server: srv}}, ShutdownDelay: tc.delay, ShutdownTimeout: time.Minute,
				Status: func(func() bool) (StatusPort, error) { return st, nil }})
			h.sigs <- syscall.SIGTERM
			if tc.delay == 0 {
				received(t, "Shutdown", srv.shutdowns)
			}
			h.sigs <- syscall.SIGHUP
			h.stillRunning(t, 100*time.Millisecond)
			h.sigs <- syscall.SIGINT
			if err := h.result(t, time.Second); !errors.Is(err, ErrInterrupted) {
				t.Fatalf("Run = %v, want ErrInterrupted", err)
			}
			select {
			case <-st.closed:
			default:
				t.Error("status port left open")
			}
			h.logged(t, "second signal: exiting now")
		})
	}
}

// TestSIGHUPReloadsCertificatesAndReports sends real signals to the test
// process: SIGHUP reloads every service's certificates and hands each
// outcome to its OnReload, and SIGTERM then shuts down.
func TestSIGHUPReloadsCertificatesAndReports(t *testing.T) {
	certs := &fakeCertificates{err: errBadPEM, watched: make(chan struct{})}
	reports := make(chan error, 4)
	h := startWithSignals(t, Options{Services: []Service{{Server: newFakeServer(0), Certificates: certs,
		OnReload: func(err error) { reports <- err }}}})
	if err := received(t, "the watch's report", reports); err != nil {
		t.Fatalf("watch reported %v, want the nil it passed", err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := received(t, "the SIGHUP reload's report", reports); !errors.Is(err, errBadPEM) {
		t.Fatalf("reload reported %v, want %v", err, errBadPEM)
	}
	if n := certs.reloads.Load(); n != 1 {
		t.Errorf("%d reloads after one SIGHUP", n)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := h.result(t, 2*time.Second); err != nil {
		t.Fatalf("Run = %v after SIGTERM, want nil", err)
	}
	received(t, "the watch to stop", certs.watched)
}

// TestEveryServiceDrainsAndStaysFresh: with two services, readiness fails
// when either drains, both are shut down under one timeout, targets are
// re-resolved at the interval, and the status port outlives the drain.
func TestEveryServiceDrainsAndStaysFresh(t *testing.T) {
	a, b := newFakeServer(0), newFakeServer(1)
	target := &fakeTarget{every: make(chan time.Duration, 1), stopped: make(chan struct{})}
	st := &fakeStatus{events: make(chan string, 4), closed: make(chan struct{})}
	var statusReady func() bool
	h := start(t, Options{
		Services:        []Service{{Server: a, Target: target}, {Server: b}},
		ResolveInterval: 7 * time.Second, ShutdownTimeout: time.Minute,
		Status: func(ready func() bool) (StatusPort, error) { statusReady = ready; return st, nil },
	})
	if every := received(t, "KeepResolved", target.every); every != 7*time.Second {
		t.Errorf("targets re-resolved every %s, want 7s", every)
	}
	if got := received(t, "status Serve", st.events); got != "serve" || !statusReady() {
		t.Fatalf("status port: %s, ready %v; want it served and ready", got, statusReady())
	}
	b.draining.Store(true)
	if h.r.Ready() {
		t.Error("ready while a service drains")
	}
	b.draining.Store(false)

	h.sigs <- syscall.SIGTERM
	received(t, "Shutdown of the first service", a.shutdowns)
	received(t, "Shutdown of the second service", b.shutdowns)
	h.stillRunning(t, 100*time.Millisecond)
	if len(st.events) != 0 {
		t.Fatal("status port closed before the drain ended")
	}
	close(b.finish)
	if err := h.result(t, 2*time.Second); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if got := received(t, "status Close", st.events); got != "close" {
		t.Errorf("status port: %s, want close", got)
	}
	received(t, "the resolver to stop", target.stopped)
	h.logged(t, `"target":"upstream.test:8080"`)
}

// TestServiceStoppingByItselfEndsRun: a Serve that fails ends Run with its
// error, and the runner is no longer ready.
func TestServiceStoppingByItselfEndsRun(t *testing.T) {
	broken := errors.New("event loop: too many open files")
	srv := newFakeServer(0)
	srv.serveErr = broken
	r := New(Options{Services: []Service{{Server: srv}}, Signals: make(chan os.Signal)})
	if err := r.Run(context.Background()); !errors.Is(err, broken) {
		t.Fatalf("Run = %v, want %v", err, broken)
	}
	if r.Ready() {
		t.Error("ready after Run returned")
	}
}

// TestStatusPortErrorStopsBeforeServing: a status port that cannot open
// ends Run before any service serves.
func TestStatusPortErrorStopsBeforeServing(t *testing.T) {
	inUse := errors.New("listen :9090: address already in use")
	srv := newFakeServer(0)
	r := New(Options{Services: []Service{{Server: srv}}, Signals: make(chan os.Signal),
		Status: func(func() bool) (StatusPort, error) { return nil, inUse }})
	if err := r.Run(context.Background()); !errors.Is(err, inUse) {
		t.Fatalf("Run = %v, want %v", err, inUse)
	}
	if r.serving.Load() {
		t.Error("services started although the status port failed")
	}
}

// TestCancelledContextEndsRun: the end of Run's context stops everything
// at once.
func TestCancelledContextEndsRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := New(Options{Services: []Service{{Server: newFakeServer(1)}}, Signals: make(chan os.Signal)})
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	waitFor(t, "the runner to be ready", r.Ready)
	cancel()
	if err := received(t, "Run to return", done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
}

// TestReloadEveryReloadsBesidesTheWatch: with ReloadEvery the
// certificates are reloaded again and again without a signal, each
// outcome reported (a Certificates without Check reports every one), and
// the reloads stop with Run.
func TestReloadEveryReloadsBesidesTheWatch(t *testing.T) {
	certs := &fakeCertificates{err: errBadPEM, watched: make(chan struct{})}
	reports := make(chan error, 64)
	h := start(t, Options{Services: []Service{{ReloadEvery: 20 * time.Millisecond, Server: newFakeServer(0), Certificates: certs,
		OnReload: func(err error) {
			select {
			case reports <- err:
			default:
			}
		}}}})
	if err := received(t, "the watch's report", reports); err != nil {
		t.Fatalf("watch reported %v", err)
	}
	for i := range 3 {
		if err := received(t, fmt.Sprintf("timed reload %d", i+1), reports); !errors.Is(err, errBadPEM) {
			t.Fatalf("timed reload reported %v, want %v", err, errBadPEM)
		}
	}
	h.sigs <- syscall.SIGTERM
	if err := h.result(t, 5*time.Second); err != nil {
		t.Fatalf("Run = %v", err)
	}
	received(t, "the watch to stop", certs.watched)
	n := certs.reloads.Load()
	time.Sleep(100 * time.Millisecond)
	if m := certs.reloads.Load(); m != n {
		t.Fatalf("%d reloads after Run returned", m-n)
	}
}
