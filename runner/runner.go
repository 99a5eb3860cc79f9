// Package runner supervises moat's process: it serves one or more services
// until a signal, keeps their certificates and targets fresh, reports
// readiness, and shuts down in the order load balancers need.
//
//	err := runner.Run(ctx, runner.Options{
//		Services: []runner.Service{{Server: srv, Certificates: src, OnReload: logReload, Target: target}},
//		Status:   openStatusPort, // given the runner's readiness
//		ShutdownDelay:   5 * time.Second,
//		ShutdownTimeout: 30 * time.Second,
//		Log:             log,
//	})
//
// SIGHUP reloads every service's certificates. SIGTERM or SIGINT begins the
// shutdown: readiness fails at once, the services keep accepting for
// ShutdownDelay, then stop accepting and get ShutdownTimeout to finish their
// connections. A second SIGTERM or SIGINT ends Run at once.
package runner

import (
	"cmp"
	"context"
	"errors"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// Server is one listener and the connections it serves; *proxy.Server is
// one.
type Server interface {
	// Serve runs until Shutdown completes or ctx ends; the end of ctx
	// closes every connection at once.
	Serve(ctx context.Context) error
	// Shutdown stops accepting and waits for open connections until ctx
	// ends, when it resets the rest and returns an error wrapping ctx.Err().
	Shutdown(ctx context.Context) error
	Active() int64  // open connections
	Draining() bool // Shutdown has begun
	Addr() net.Addr // where it listens
}

// Certificates is a service's reloadable certificate source; *certs.Source
// is one.
type Certificates interface {
	// Reload reads the files again; on failure the old material stays.
	Reload() error
	// Watch reloads when the files change, until ctx ends, and tells
	// onReload about new material or a new failure.
	Watch(ctx context.Context, onReload func(error))
}

// Target is where a service relays, kept resolved; upstream.Target is one.
type Target interface {
	// KeepResolved re-resolves a host name every interval until stop is
	// closed.
	KeepResolved(interval time.Duration, stop <-chan struct{})
	String() string
}

// StatusPort is the operator HTTP port; *status.Server is one.
type StatusPort interface {
	Serve() error
	Close(ctx context.Context) error
}

// Service is one server and what keeps it current.
type Service struct {
	Server Server
	// Certificates, when not nil, is reloaded on SIGHUP and whenever its
	// files change.
	Certificates Certificates
	// OnReload is told the outcome of each reload of Certificates (the log
	// line, the metrics); nil ignores it.
	OnReload func(error)
	// Target, when not nil, is re-resolved every Options.ResolveInterval.
	Target Target
}

// Options say what to run and how to stop it.
type Options struct {
	Services []Service
	// Status, when not nil, opens the status port, judging readiness by the
	// function it is given. Run serves the port while the services serve
	// and closes it only after they have drained, so that readiness answers
	// "no" throughout the drain.
	Status func(ready func() bool) (StatusPort, error)
	// ShutdownDelay is how long the services keep accepting after a
	// shutdown signal, with readiness already failing, so that load
	// balancers notice first.
	ShutdownDelay time.Duration
	// ShutdownTimeout is how long open connections get to finish once the
	// services stop accepting; the rest are then reset.
	ShutdownTimeout time.Duration
	// ResolveInterval is how often each Target is re-resolved; 0 means
	// DefaultResolveInterval.
	ResolveInterval time.Duration
	// LimitMemory sets the Go runtime's soft memory limit from the
	// container's and returns memory freed after a burst to the operating
	// system while Run runs. Only one Run in a process should set it.
	LimitMemory bool
	// Confine, when not nil, is called once everything is bound and
	// loaded (the status port opened, the memory limit read) and before
	// the services start: where the process gives up what it no longer
	// needs (see package sandbox). An error ends Run before serving.
	Confine func() error
	// Signals, when not nil, stands in for the process's SIGTERM, SIGINT
	// and SIGHUP.
	Signals <-chan os.Signal
	Log     zerolog.Logger
}

// DefaultResolveInterval is how often a Target's host name is resolved
// again when Options.ResolveInterval is 0.
const DefaultResolveInterval = 30 * time.Second

// statusCloseTimeout bounds closing the status port: probes and scrapes are
// short, and a stuck one must not hold up exit.
const statusCloseTimeout = 5 * time.Second

// ErrInterrupted is wrapped by Run's error when a second shutdown signal
// ended it without waiting for open connections.
var ErrInterrupted = errors.New("second signal: stopped without waiting for open connections")

// Runner runs a set of services; Run runs them once.
type Runner struct {
	o        Options
	serving  atomic.Bool // every service has been started
	stopping atomic.Bool // a shutdown signal arrived
}

// New returns a Runner for o; call Run to start it.
func New(o Options) *Runner { return &Runner{o: o} }

// Run runs the services of o until they have shut down; see Runner.Run.
func Run(ctx context.Context, o Options) error { return New(o).Run(ctx) }

// Ready reports whether every service is serving and no shutdown has begun.
// It turns false the moment a shutdown signal arrives, while the services
// still accept for ShutdownDelay.
func (r *Runner) Ready() bool {
	if !r.serving.Load() || r.stopping.Load() {
		return false
	}
	for _, s := range r.o.Services {
		if s.Server.Draining() {
			return false
		}
	}
	return true
}

// Run serves every service until a shutdown signal, then shuts them down
// gracefully. It returns nil after a clean shutdown; a *CutError when the
// shutdown timeout cut connections; an error wrapping ErrInterrupted after
// a second signal; ctx.Err() when ctx ends, which closes every connection
// at once; and a service's own error when one stops by itself.
func (r *Runner) Run(ctx context.Context) error {
	if len(r.o.Services) == 0 {
		return errors.New("runner: no services to run")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sigs, stopSignals := r.signals()
	defer stopSignals()
	status, err := r.openStatus()
	if err != nil {
		return err
	}
	if r.o.LimitMemory {
		keepMemoryInLimit(ctx, r.o.Log)
	}
	if r.o.Confine != nil {
		if err := r.o.Confine(); err != nil {
			if status != nil {
				closeStatus(status, true)
			}
			return err
		}
	}
	served := r.start(ctx)
	r.serving.Store(true)
	if status != nil {
		go serveStatus(status, r.o.Log)
	}
	for _, s := range r.o.Services {
		ev := r.o.Log.Info().Str("listen", s.Server.Addr().String())
		if s.Target != nil {
			ev = ev.Str("target", s.Target.String())
		}
		ev.Msg("moat is listening")
	}
	err = r.supervise(ctx, sigs, served)
	if status != nil {
		closeStatus(status, errors.Is(err, ErrInterrupted))
	}
	return err
}

// signals returns the channel shutdown and reload signals arrive on, and
// what to call when Run no longer wants them.
func (r *Runner) signals() (<-chan os.Signal, func()) {
	if r.o.Signals != nil {
		return r.o.Signals, func() {}
	}
	c := make(chan os.Signal, 2)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	return c, func() { signal.Stop(c) }
}

func (r *Runner) openStatus() (StatusPort, error) {
	if r.o.Status == nil {
		return nil, nil
	}
	return r.o.Status(r.Ready)
}

// start serves every service and keeps its certificates and target fresh
// until ctx ends. Each Serve's result arrives on the returned channel.
func (r *Runner) start(ctx context.Context) <-chan error {
	served := make(chan error, len(r.o.Services))
	every := cmp.Or(r.o.ResolveInterval, DefaultResolveInterval)
	for _, s := range r.o.Services {
		go serveService(ctx, s.Server, served)
		if s.Target != nil {
			go s.Target.KeepResolved(every, ctx.Done())
		}
		if s.Certificates != nil {
			go s.Certificates.Watch(ctx, s.reported())
		}
	}
	return served
}

// serveService runs one server; a named function, so that stack dumps say
// what the goroutine is.
func serveService(ctx context.Context, srv Server, served chan<- error) {
	served <- srv.Serve(ctx)
}

// serveStatus serves the status port until it is closed.
func serveStatus(st StatusPort, log zerolog.Logger) {
	if err := st.Serve(); err != nil {
		log.Error().Err(err).Msg("status server stopped")
	}
}

// closeStatus closes the status port: gracefully, or at once after a
// second signal.
func closeStatus(st StatusPort, now bool) {
	ctx, cancel := context.WithTimeout(context.Background(), statusCloseTimeout)
	if now {
		cancel()
	}
	defer cancel()
	st.Close(ctx)
}

// reported returns what a reload's outcome is handed to.
func (s Service) reported() func(error) {
	if s.OnReload == nil {
		return func(error) {}
	}
	return s.OnReload
}

// supervise waits for a signal or for a service to stop by itself. SIGHUP
// reloads certificates; SIGTERM and SIGINT begin the shutdown.
func (r *Runner) supervise(ctx context.Context, sigs <-chan os.Signal, served <-chan error) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-served:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.stopping.Store(true)
			return err
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				r.reload()
				continue
			}
			return r.shutdown(ctx, sig, sigs, served)
		}
	}
}

// reload reloads every service's certificates and reports each outcome.
func (r *Runner) reload() {
	for _, s := range r.o.Services {
		if s.Certificates != nil {
			s.reported()(s.Certificates.Reload())
		}
	}
}
