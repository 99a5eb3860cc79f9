package runner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"
)

// CutError is Run's error when the shutdown timeout ran out with
// connections still open: they were reset, and a supervisor should hear of
// it (moat exits 1).
type CutError struct {
	Timeout time.Duration // Options.ShutdownTimeout
	Err     error         // the services' Shutdown errors; wraps context.DeadlineExceeded
}

func (e *CutError) Error() string {
	return fmt.Sprintf("shutdown timeout %s reached: %v", e.Timeout, e.Err)
}

func (e *CutError) Unwrap() error { return e.Err }

// shutdown takes the services down in the order load balancers need:
// readiness fails at once; new connections are still accepted for
// ShutdownDelay; then the listeners close and open connections get
// ShutdownTimeout to finish. SIGHUP is ignored meanwhile; a second SIGTERM
// or SIGINT returns at once.
func (r *Runner) shutdown(ctx context.Context, sig os.Signal, sigs <-chan os.Signal, served <-chan error) error {
	r.stopping.Store(true)
	r.notify.stopping()
	r.o.Log.Info().Str("signal", sig.String()).Int64("open_connections", r.active()).
		Dur("shutdown_delay", r.o.ShutdownDelay).Dur("shutdown_timeout", r.o.ShutdownTimeout).Msg("shutting down: not ready")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends a drain still waiting out the delay
	drained := make(chan error, 1)
	go r.drain(ctx, drained)
	for {
		select {
		case err := <-drained:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.set.wait() // each Serve returns once its Shutdown is done
			return r.stopped(err)
		case s := <-sigs:
			if s == syscall.SIGHUP {
				continue
			}
			r.o.Log.Warn().Str("signal", s.String()).Msg("second signal: exiting now")
			return fmt.Errorf("%w (%s)", ErrInterrupted, s)
		}
	}
}

// drain waits out ShutdownDelay, then shuts every service down at once
// under one ShutdownTimeout, and sends what their Shutdowns returned.
func (r *Runner) drain(ctx context.Context, drained chan<- error) {
	delay := time.NewTimer(r.o.ShutdownDelay)
	defer delay.Stop()
	select {
	case <-ctx.Done():
		drained <- ctx.Err()
		return
	case <-delay.C:
	}
	live := r.set.close()
	// Listeners close before the line says so: a client that reads the log
	// and dials is refused, not reset by a listener closing under it.
	for _, s := range live {
		if sa, ok := s.Server.(acceptStopper); ok {
			sa.StopAccepting()
		}
	}
	r.o.Log.Info().Msg("listener closed; waiting for open connections")
	deadline, cancel := context.WithTimeout(context.Background(), r.o.ShutdownTimeout)
	defer cancel()
	errs := make([]error, len(live)+1)
	var wg sync.WaitGroup
	for i, s := range live {
		wg.Go(func() { errs[i] = s.Server.Shutdown(deadline) })
	}
	errs[len(live)] = r.set.retired.wait(deadline)
	wg.Wait()
	drained <- errors.Join(errs...)
}

// stopped turns the drain's outcome into Run's result.
func (r *Runner) stopped(err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		r.o.Log.Warn().Err(err).Msg("shutdown timeout reached; remaining connections reset")
		return &CutError{Timeout: r.o.ShutdownTimeout, Err: err}
	case err != nil:
		return err
	}
	r.o.Log.Info().Msg("moat stopped")
	return nil
}

// active is the number of connections open across every service.
func (r *Runner) active() int64 {
	var n int64
	for _, s := range r.set.current() {
		n += s.Server.Active()
	}
	return n + r.set.retired.active()
}
