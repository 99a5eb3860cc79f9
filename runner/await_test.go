package runner

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// awaitHarness runs o, whose Await blocks until release is closed (then
// returns awaitErr), without waiting for readiness.
type awaitHarness struct {
	*harness
	status  *fakeStatus
	release chan struct{}
	reports chan error
}

func startAwaiting(t *testing.T, awaitErr error) *awaitHarness {
	t.Helper()
	a := &awaitHarness{
		status:  &fakeStatus{events: make(chan string, 4), closed: make(chan struct{})},
		release: make(chan struct{}),
		reports: make(chan error, 4),
	}
	sigs := make(chan os.Signal, 4)
	certs := &fakeCertificates{watched: make(chan struct{})}
	o := Options{
		Services: []Service{{Server: newFakeServer(0), Certificates: certs, OnReload: func(err error) { a.reports <- err }}},
		Status:   func(func() bool) (StatusPort, error) { return a.status, nil },
		Await: func(ctx context.Context) error {
			select {
			case <-a.release:
				return awaitErr
			case <-ctx.Done():
				return ctx.Err()
			}
		},
		ShutdownTimeout: time.Second,
		Signals:         sigs,
	}
	a.harness = &harness{log: &logBuffer{}, done: make(chan error, 1), sigs: sigs}
	o.Log = zerolog.New(a.log)
	a.r = New(o)
	go func() { a.done <- a.r.Run(context.Background()) }()
	return a
}

// TestAwaitServesStatusAndWatchesBeforeServing: while Await waits, the
// status port serves with readiness failing and the certificate watch runs
// (so the awaited material is reported); the services serve only after.
func TestAwaitServesStatusAndWatchesBeforeServing(t *testing.T) {
	a := startAwaiting(t, nil)
	if ev := received(t, "the status port to serve", a.status.events); ev != "serve" {
		t.Fatalf("status event %q, want serve", ev)
	}
	if err := received(t, "the certificate watch's report", a.reports); err != nil {
		t.Fatalf("report %v", err)
	}
	a.stillRunning(t, 100*time.Millisecond)
	if a.r.Ready() || strings.Contains(a.log.String(), "moat is listening") {
		t.Fatalf("ready or listening before Await returned; log:\n%s", a.log)
	}
	close(a.release)
	waitFor(t, "the runner to be ready", a.r.Ready)
	a.sigs <- syscall.SIGTERM
	if err := a.result(t, 2*time.Second); err != nil {
		t.Fatalf("Run = %v", err)
	}
	a.logged(t, "moat is listening")
}

// TestAwaitErrorEndsRun: no certificate in time is Run's error, and the
// status port is closed.
func TestAwaitErrorEndsRun(t *testing.T) {
	want := errors.New("no SVID from the Workload API at unix:///x within 30s")
	a := startAwaiting(t, want)
	received(t, "the status port to serve", a.status.events)
	close(a.release)
	if err := a.result(t, 2*time.Second); !errors.Is(err, want) {
		t.Fatalf("Run = %v, want %v", err, want)
	}
	if ev := received(t, "the status port to close", a.status.events); ev != "close" {
		t.Fatalf("status event %q, want close", ev)
	}
}

// TestShutdownSignalWhileAwaiting: SIGHUP is ignored while waiting; SIGTERM
// ends Run cleanly, never having served.
func TestShutdownSignalWhileAwaiting(t *testing.T) {
	a := startAwaiting(t, nil)
	received(t, "the status port to serve", a.status.events)
	a.sigs <- syscall.SIGHUP
	a.stillRunning(t, 100*time.Millisecond)
	a.sigs <- syscall.SIGTERM
	if err := a.result(t, 2*time.Second); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if strings.Contains(a.log.String(), "moat is listening") {
		t.Fatalf("served after a shutdown signal while waiting; log:\n%s", a.log)
	}
}
