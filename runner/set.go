package runner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// ErrStopping is returned by Add, Replace and Remove once the shutdown has
// begun: the set of services no longer changes.
var ErrStopping = errors.New("runner: shutting down")

// running is a service in the set, with what keeps it current.
type running struct {
	svc     Service
	ctx     context.Context    // of its certificate watch and re-resolving; nil until watched
	stop    context.CancelFunc // ends them
	retired atomic.Bool        // out of the set: its Serve returning is expected
}

// serviceSet is the services a Runner serves now, and those it retired
// that still drain. The supervisor changes it; readiness and the status
// port read it.
type serviceSet struct {
	mu      sync.Mutex
	list    []*running
	closed  bool
	ctx     context.Context // Run's; nil until begin
	every   time.Duration
	served  chan error // a live service's Serve returned
	serving sync.WaitGroup
	retired retiredSet
}

func (s *serviceSet) init(svcs []Service) {
	for _, svc := range svcs {
		s.list = append(s.list, &running{svc: svc})
	}
	s.retired.init()
}

// begin records what launch needs, and returns the channel a live
// service's Serve result arrives on.
func (s *serviceSet) begin(ctx context.Context, every time.Duration) <-chan error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ctx, s.every = ctx, every
	s.served = make(chan error, 1)
	return s.served
}

// watch keeps one service's certificates fresh until parent ends or the
// service retires.
func (s *serviceSet) watch(parent context.Context, rs *running) {
	rs.ctx, rs.stop = context.WithCancel(parent)
	if rs.svc.Certificates != nil {
		go rs.svc.Certificates.Watch(rs.ctx, rs.svc.reported())
		if rs.svc.ReloadEvery > 0 {
			go reloadEvery(rs.ctx, rs.svc.ReloadEvery, rs.svc)
		}
	}
}

// launch serves one service and keeps its certificates (unless already
// watched) and target fresh.
func (s *serviceSet) launch(rs *running) {
	if rs.ctx == nil {
		s.watch(s.ctx, rs)
	}
	s.serving.Add(1)
	go serveService(s.ctx, rs, s)
	if rs.svc.Target != nil {
		go rs.svc.Target.KeepResolved(s.every, rs.ctx.Done())
	}
}

// serveService runs one server; a named function, so that stack dumps say
// what the goroutine is. A service that leaves the set by itself ends Run.
func serveService(ctx context.Context, rs *running, s *serviceSet) {
	defer s.serving.Done()
	err := rs.svc.Server.Serve(ctx)
	if rs.retired.Load() {
		return
	}
	select {
	case s.served <- err:
	default: // one stopped service is enough to end Run
	}
}

func (s *serviceSet) running() []*running {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.list)
}

// current returns the services in the set now.
func (s *serviceSet) current() []Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Service, len(s.list))
	for i, rs := range s.list {
		out[i] = rs.svc
	}
	return out
}

// close freezes the set for the shutdown and returns its services.
func (s *serviceSet) close() []Service {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return s.current()
}

// wait returns when every Serve, retired ones included, has returned.
func (s *serviceSet) wait() { s.serving.Wait() }

func (s *serviceSet) find(name string) int {
	return slices.IndexFunc(s.list, func(rs *running) bool { return rs.svc.Name == name })
}

// Add starts serving svc. Its name must not be in the set.
func (r *Runner) Add(svc Service) error {
	s := &r.set
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed || r.stopping.Load():
		return ErrStopping
	case s.find(svc.Name) >= 0:
		return fmt.Errorf("runner: service %q already runs", svc.Name)
	}
	rs := &running{svc: svc}
	s.list = append(s.list, rs)
	if s.ctx != nil {
		s.launch(rs)
		svc.logListening(r.o.Log)
	}
	return nil
}

// Replace serves svc in place of the service of the same name, which stops
// accepting at once (after svc has started, so that a listening socket it
// handed over never stops accepting) and keeps its open connections, with
// the settings they started with, until they end or the shutdown ends them.
func (r *Runner) Replace(svc Service) error {
	s := &r.set
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.find(svc.Name)
	switch {
	case s.closed || r.stopping.Load():
		return ErrStopping
	case i < 0:
		return fmt.Errorf("runner: no service %q to replace", svc.Name)
	}
	old := s.list[i]
	rs := &running{svc: svc}
	s.list[i] = rs
	if s.ctx != nil {
		s.launch(rs)
		svc.logListening(r.o.Log)
		s.retire(old, 0, r.o.Log, "replaced")
	}
	return nil
}

// Remove takes the named service out of the set: it stops accepting, and
// its open connections get timeout to finish before they are reset; a
// negative timeout lets them finish by themselves (or at the shutdown), as
// for a service whose listening socket went to another (see Replace).
func (r *Runner) Remove(name string, timeout time.Duration) error {
	s := &r.set
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.find(name)
	switch {
	case s.closed || r.stopping.Load():
		return ErrStopping
	case i < 0:
		return fmt.Errorf("runner: no service %q to remove", name)
	}
	old := s.list[i]
	s.list = slices.Delete(s.list, i, i+1)
	if s.ctx != nil {
		if timeout < 0 {
			timeout = 0
		} else {
			timeout = max(timeout, time.Nanosecond)
		}
		s.retire(old, timeout, r.o.Log, "removed")
	}
	return nil
}

// Service returns the service of that name in the set.
func (r *Runner) Service(name string) (Service, bool) {
	s := &r.set
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := s.find(name); i >= 0 {
		return s.list[i].svc, true
	}
	return Service{}, false
}

// retire stops a service that left the set: its watchers end, its server
// drains (for timeout; 0 = until its connections end or the shutdown).
func (s *serviceSet) retire(rs *running, timeout time.Duration, log zerolog.Logger, why string) {
	rs.retired.Store(true)
	if sa, ok := rs.svc.Server.(acceptStopper); ok {
		// New connections belong to the new settings from the moment
		// Replace or Remove returns, not once the drain has begun.
		sa.StopAccepting()
	}
	if rs.stop != nil {
		rs.stop()
	}
	s.retired.add(rs.svc, timeout, log, why)
}

// logListening says where a service listens, once it serves.
func (s Service) logListening(log zerolog.Logger) {
	ev := log.Info().Str("listen", s.Server.Addr().String())
	if s.Name != "" {
		ev = ev.Str("service", s.Name)
	}
	if s.Target != nil {
		ev = ev.Str("target", s.Target.String())
	}
	ev.Msg("moat is listening")
}

// acceptStopper is a Server that can stop accepting at once, before its
// drain; *proxy.Server is one.
type acceptStopper interface{ StopAccepting() }

// retiredSet is the servers that left the set and still drain.
type retiredSet struct {
	mu      sync.Mutex
	servers map[Server]struct{}
	ctx     context.Context // ends at the shutdown's deadline
	cut     context.CancelFunc
	wg      sync.WaitGroup
	errs    []error
}

func (t *retiredSet) init() {
	t.servers = make(map[Server]struct{})
	t.ctx, t.cut = context.WithCancel(context.Background())
}

func (t *retiredSet) add(svc Service, timeout time.Duration, log zerolog.Logger, why string) {
	t.mu.Lock()
	t.servers[svc.Server] = struct{}{}
	t.mu.Unlock()
	t.wg.Add(1)
	go t.drain(svc, timeout, log, why)
}

// drain shuts one retired server down and logs how it went.
func (t *retiredSet) drain(svc Service, timeout time.Duration, log zerolog.Logger, why string) {
	defer t.wg.Done()
	ctx := t.ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	log.Info().Str("service", svc.Name).Str("listen", svc.Server.Addr().String()).Int64("open_connections", svc.Server.Active()).
		Msgf("service %s: stopped accepting; its open connections finish", why)
	err := svc.Server.Shutdown(ctx)
	t.mu.Lock()
	delete(t.servers, svc.Server)
	if err != nil && t.ctx.Err() != nil {
		// cut by the process's shutdown: a cut like the live services'
		t.errs = append(t.errs, fmt.Errorf("service %s: %w (%w)", svc.Name, err, context.DeadlineExceeded))
	}
	t.mu.Unlock()
	if err != nil {
		log.Warn().Str("service", svc.Name).Err(err).Msgf("service %s: shutdown timeout reached; remaining connections reset", why)
		return
	}
	log.Info().Str("service", svc.Name).Msgf("service %s: drained", why)
}

// wait lets retired servers drain until deadline ends, then cuts them, and
// returns the errors of those that were cut.
func (t *retiredSet) wait(deadline context.Context) error {
	stop := context.AfterFunc(deadline, t.cut)
	defer stop()
	t.wg.Wait()
	t.mu.Lock()
	defer t.mu.Unlock()
	return errors.Join(t.errs...)
}

// active is the connections the retired servers still hold.
func (t *retiredSet) active() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var n int64
	for srv := range t.servers {
		n += srv.Active()
	}
	return n
}
