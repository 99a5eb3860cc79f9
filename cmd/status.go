package cmd

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/moat-proxy/moat/certs"
	"github.com/moat-proxy/moat/endpoint"
	"github.com/moat-proxy/moat/metrics"
	"github.com/moat-proxy/moat/proxy"
	"github.com/moat-proxy/moat/proxyproto"
	"github.com/moat-proxy/moat/runner"
	"github.com/moat-proxy/moat/status"
)

// upstreamCheckTTL and upstreamCheckTimeout bound what readiness probes
// cost the upstream: at most one connect per second, each given up after a
// second, so a hung upstream cannot pile up probe goroutines either.
const (
	upstreamCheckTTL     = time.Second
	upstreamCheckTimeout = time.Second
)

// statusOptions are the flags of the status port, shared by server and
// client modes. The work is split in two because the observer must be in
// proxy.Config before proxy.New, while the status server needs the
// runner's readiness:
//
//	cfg.Observer = o.status.observer()
//	srv, err := proxy.New(cfg)
//	runner.Run(ctx, runner.Options{..., Status: o.status.port(log, cfg.Target, src)})
type statusOptions struct {
	addr  string
	pprof bool
	// mode and listen are what /_status reports besides the target.
	mode, listen string
	// proxyProtocol is the PROXY protocol version the upstream expects
	// (0 = none). Readiness connects then send a LOCAL header, the form the
	// specification provides for health checks, so the upstream does not
	// log each probe as a broken header.
	proxyProtocol int

	run *statusRun // made by observer; nil without --status
}

// statusRun is what one run of the command built.
type statusRun struct {
	reg        *prometheus.Registry
	metrics    *metrics.Metrics
	server     *status.Server // set by open
	lastReload atomic.Int64   // UnixNano of the last reload that put new material in service
}

func (s *statusOptions) register(f *pflag.FlagSet) {
	f.StringVar(&s.addr, "status", "", "serve /healthz, /readyz and /metrics over plain HTTP on this host:port (empty = no status port)")
	f.BoolVar(&s.pprof, "enable-pprof", false, "also serve /debug/pprof/ on the --status port")
}

// observer builds the metrics and returns them as the proxy's observer, or
// nil when there is no --status port to read them from.
func (s *statusOptions) observer() proxy.Observer {
	if s.addr == "" {
		return nil
	}
	if s.run == nil {
		reg := prometheus.NewRegistry()
		registerBuildInfo(reg)
		s.run = &statusRun{reg: reg, metrics: metrics.New(reg)}
	}
	return s.run.metrics
}

// port returns what opens the status port for the runner, or nil without
// --status.
func (s *statusOptions) port(log zerolog.Logger, target *endpoint.Resolver, src *certs.Source) func(ready func() bool) (runner.StatusPort, error) {
	if s.addr == "" {
		return nil
	}
	return func(ready func() bool) (runner.StatusPort, error) { return s.open(log, ready, target, src) }
}

// open binds the status port; the runner serves it, and closes it after the
// proxy has drained, so that /readyz answers 503 throughout the drain.
// Readiness fails while ready says no: from the moment a shutdown signal
// arrives, through --shutdown-delay while moat still accepts, and while the
// proxy drains. It also records the expiry of the certificate in service.
func (s *statusOptions) open(log zerolog.Logger, ready func() bool, target *endpoint.Resolver, src *certs.Source) (*status.Server, error) {
	s.observer()
	var waiting func() string
	if src != nil {
		s.run.metrics.CertificateLoaded(src.NotAfter())
		waiting = src.Waiting
	}
	st, err := status.New(status.Config{
		Waiting:       waiting,
		Addr:          s.addr,
		Gatherer:      s.run.reg,
		EnablePprof:   s.pprof,
		Draining:      func() bool { return !ready() },
		CheckUpstream: status.Cached(upstreamCheckTTL, dialCheck(target.Address(), s.proxyProtocol)),
		Described:     s.described(target),
	})
	if errors.Is(err, status.ErrBadAddress) {
		return nil, flagError("status", "%v", err)
	} else if err != nil {
		return nil, addressFailure("status", s.addr, err) // a port in use is not a usage error
	}
	s.run.server = st
	log.Info().Str("status", st.Addr().String()).Bool("pprof", s.pprof).Msg("status port is serving")
	return st, nil
}

// check validates the status flags without binding, for --dry-run.
func (s *statusOptions) check() error {
	switch {
	case s.addr == "" && s.pprof:
		return flagError("enable-pprof", "needs --status: pprof is served on the status port only")
	case s.addr == "":
		return nil
	}
	if err := status.CheckAddr(s.addr); err != nil {
		return flagError("status", "%v", err)
	}
	return nil
}

// onReload counts a certificate reload and tracks the new expiry, then
// hands the outcome to next (the log line).
func (s *statusOptions) onReload(src *certs.Source, next func(error)) func(error) {
	return func(err error) {
		if s.run != nil {
			s.run.metrics.Reload(err)
			if err == nil && src != nil {
				s.run.metrics.CertificateLoaded(src.NotAfter())
				s.run.lastReload.Store(time.Now().UnixNano())
			}
		}
		next(err)
	}
}

// dialCheck connects to the target and hangs up: a listening upstream is
// what readiness promises the load balancer.
func dialCheck(target endpoint.Address, proxyProtocol int) func(context.Context) error {
	var hello []byte
	switch proxyProtocol {
	case 1:
		hello = []byte("PROXY UNKNOWN\r\n")
	case 2:
		hello = proxyproto.V2Local()
	}
	return func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, upstreamCheckTimeout)
		defer cancel()
		var d net.Dialer
		c, err := d.DialContext(ctx, target.Network(), target.NetAddress())
		if err != nil {
			return err
		}
		defer c.Close()
		if hello != nil {
			c.SetWriteDeadline(time.Now().Add(upstreamCheckTimeout))
			c.Write(hello) // best effort: the connect is what was checked
		}
		return nil
	}
}

// described is what ghostunnel's /_status reports about this proxy.
func (s *statusOptions) described(target *endpoint.Resolver) status.Described {
	run := s.run
	return status.Described{
		Mode: s.mode, Listen: s.listen, Target: target.Address().String(), Revision: Version,
		LastReload: func() time.Time {
			if n := run.lastReload.Load(); n != 0 {
				return time.Unix(0, n)
			}
			return time.Time{}
		},
	}
}
