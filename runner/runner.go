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
// SIGHUP reloads every service's certificates, after Options.Reconfigure
// (moat run's configuration file), which may Add, Replace and Remove
// services while Run runs. SIGTERM or SIGINT begins the
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
	// Name names the service in logs and readiness; "" for the only one.
	Name   string
	Server Server
	// Certificates, when not nil, is reloaded on SIGHUP and whenever its
	// files change.
	Certificates Certificates
	// OnReload is told the outcome of each reload of Certificates (the log
	// line, the metrics); nil ignores it.
	OnReload func(error)
	// Target, when not nil, is re-resolved every Options.ResolveInterval.
	Target Target
	// ReloadEvery, when not 0, also reloads Certificates this often,
	// besides on SIGHUP and when the files change (ghostunnel's
	// --timed-reload, for files changed in ways inotify misses).
	ReloadEvery time.Duration
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
	// Await, when not nil, must return before the services serve: it
	// waits for certificates that arrive after start, such as the first
	// SVID from the SPIFFE Workload API. Meanwhile the status port serves
	// (with readiness failing), and a shutdown signal ends Run at once
	// with nil; an error from Await ends Run with that error.
	Await func(ctx context.Context) error
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
	// Reconfigure, when not nil, is called on SIGHUP before the
	// certificates are reloaded; it may change the services through the
	// Runner's Add, Replace and Remove.
	Reconfigure func()
	// Notify tells systemd (NOTIFY_SOCKET) when the services are ready,
	// reloading and stopping, and pings its watchdog (WATCHDOG_USEC); see
	// notifier. Only one Run in a process should set it.
	Notify bool
	Log    zerolog.Logger
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
	notify   *notifier
	serving  atomic.Bool // every service has been started
	stopping atomic.Bool // a shutdown signal arrived
	set      serviceSet
}

// New returns a Runner for o; call Run to start it.
func New(o Options) *Runner {
	r := &Runner{o: o, notify: newNotifier(o.Notify, o.Log)}
	r.set.init(o.Services)
	return r
}

// Run runs the services of o until they have shut down; see Runner.Run.
func Run(ctx context.Context, o Options) error { return New(o).Run(ctx) }

// Ready reports whether every service is serving and no shutdown has begun.
// It turns false the moment a shutdown signal arrives, while the services
// still accept for ShutdownDelay.
func (r *Runner) Ready() bool {
	if !r.serving.Load() || r.stopping.Load() {
		return false
	}
	for _, s := range r.set.current() {
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
	r.watchCertificates(ctx)
	statusServed := false
	if r.o.Await != nil {
		if status != nil {
			go serveStatus(status, r.o.Log)
			statusServed = true
		}
		if err := r.await(ctx, sigs); err != nil {
			if status != nil {
				closeStatus(status, true)
			}
			if errors.Is(err, errStoppedWaiting) {
				return nil
			}
			return err
		}
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
	if status != nil && !statusServed {
		go serveStatus(status, r.o.Log)
	}
	for _, s := range r.set.current() {
		s.logListening(r.o.Log)
	}
	r.notify.ready()
	r.notify.keepWatchdog(ctx, r.set.current)
	err = r.supervise(ctx, sigs, served)
	if status != nil {
		closeStatus(status, errors.Is(err, ErrInterrupted))
	}
	return err
}

// errStoppedWaiting is await's error when a shutdown signal came first.
var errStoppedWaiting = errors.New("shutdown signal while waiting")

// await runs Options.Await. The certificate watches already run, so the
// material Await waits for is reported when it arrives; SIGHUP
// while waiting is ignored (there is nothing to reload yet).
func (r *Runner) await(ctx context.Context, sigs <-chan os.Signal) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.o.Await(ctx) }()
	for {
		select {
		case err := <-done:
			return err
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				continue
			}
			r.stopping.Store(true)
			r.o.Log.Info().Str("signal", sig.String()).Msg("shutdown signal while waiting for certificates; exiting")
			return errStoppedWaiting
		}
	}
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
// until ctx ends. The error of a Serve that returns while its service is
// still in the set arrives on the returned channel.
func (r *Runner) start(ctx context.Context) <-chan error {
	served := r.set.begin(ctx, cmp.Or(r.o.ResolveInterval, DefaultResolveInterval))
	for _, rs := range r.set.running() {
		r.set.launch(rs)
	}
	return served
}

// watchCertificates keeps every service's certificates fresh from now,
// before the services serve, so that certificates Await waits for are
// taken in when they arrive.
func (r *Runner) watchCertificates(ctx context.Context) {
	for _, rs := range r.set.running() {
		r.set.watch(ctx, rs)
	}
}

// checker is a Certificates that can reload and report only a change or a
// new failure; *certs.Source is one. Without it a timed reload reports
// every outcome, as SIGHUP does.
type checker interface {
	Check(onReload func(error))
}

// reloadEvery reloads s's certificates every interval until ctx ends.
func reloadEvery(ctx context.Context, interval time.Duration, s Service) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if c, ok := s.Certificates.(checker); ok {
				c.Check(s.reported())
			} else {
				s.reported()(s.Certificates.Reload())
			}
		}
	}
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
	r.notify.reloading()
	defer r.notify.ready()
	if r.o.Reconfigure != nil {
		r.o.Reconfigure()
	}
	for _, s := range r.set.current() {
		if s.Certificates != nil {
			s.reported()(s.Certificates.Reload())
		}
	}
}
