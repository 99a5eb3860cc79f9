package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Services holds the metrics of a process that runs several services (moat
// run): every per-connection metric carries a service label, and the
// process-wide ones (reloads, TLS buffers, Go runtime) exist once.
//
//	svcs := metrics.NewServices(reg)
//	srv, _ := proxy.New(proxy.Config{..., Observer: svcs.For("web")})
//	svcs.Reload(err) // after each configuration reload
type Services struct {
	reg     prometheus.Registerer
	process *Metrics // holds the reload counters
	mu      sync.Mutex
	byName  map[string]*Metrics
}

// NewServices registers the process-wide collectors on reg; For adds each
// service's.
func NewServices(reg prometheus.Registerer) *Services {
	process := &Metrics{}
	reg.MustRegister(process.processCollectors()...)
	return &Services{reg: reg, process: process, byName: make(map[string]*Metrics)}
}

// For returns the metrics of the named service, made and registered on
// first use. A service that is reloaded, or removed and added again, keeps
// counting in the same series.
func (s *Services) For(name string) *Metrics {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.byName[name]; ok {
		return m
	}
	m, collectors := build(prometheus.Labels{"service": name})
	m.reloadOK, m.reloadFailed = s.process.reloadOK, s.process.reloadFailed
	s.reg.MustRegister(collectors...)
	s.byName[name] = m
	return m
}

// Reload counts a configuration or certificate reload's outcome.
func (s *Services) Reload(err error) { s.process.Reload(err) }
