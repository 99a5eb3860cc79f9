// Package status serves moat's operator endpoints over plain HTTP, on a port
// of their own so that probes and scrapes never compete with, or depend on,
// the TLS listener:
//
//	GET /healthz         200 while the process is alive
//	GET /readyz          200 while ready; 503 and a one-line reason otherwise
//	GET /metrics         Prometheus text exposition of Config.Gatherer
//	GET /debug/pprof/*   only with Config.EnablePprof
//	GET /_status, /_metrics, /_metrics/json, /_metrics/prometheus
//	                     ghostunnel's paths, for probes written for it (ghostunnel.go)
//
// Typical use:
//
//	st, err := status.New(status.Config{
//		Addr: ":9090", Gatherer: reg,
//		Draining:      srv.Draining,
//		CheckUpstream: status.Cached(time.Second, dialUpstream),
//	})
//	go st.Serve()
//	// on shutdown, after the proxy has drained:
//	st.Close(ctx)
package status

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config says where to listen and how to judge readiness.
type Config struct {
	Addr        string              // host:port; an empty host listens on every address
	Gatherer    prometheus.Gatherer // what /metrics serves; nil = no /metrics
	EnablePprof bool                // serve /debug/pprof/*; off by default, it exposes internals
	MaxConns    int                 // most connections open at once; 0 = DefaultMaxConns

	// Waiting, when not nil, says why moat cannot serve yet, such as
	// "waiting for an SVID from the Workload API", or "" when it can; a
	// reason fails readiness with that body.
	Waiting func() string
	// Draining reports that shutdown has begun; readiness then fails at
	// once, so the load balancer stops sending before the listener closes.
	Draining func() bool
	// CheckUpstream reports whether the upstream can be connected to now.
	// Probes arrive every few seconds from every kubelet and load balancer,
	// so wrap a real dial in Cached.
	CheckUpstream func(ctx context.Context) error
	// Services, when set, judges the readiness of a process that runs
	// several services (after Draining; CheckUpstream is then unused): it
	// returns why each service that is not ready is not, one line each,
	// for every service, or only for the one named (GET
	// /readyz?service=NAME), and whether that name is a service at all.
	Services func(ctx context.Context, only string) (notReady []string, known bool)
	// Described is what ghostunnel's /_status reports besides readiness
	// (see ghostunnel.go); its zero value leaves the fields empty.
	Described Described
}

// Server is the status HTTP server. New binds its socket; Serve serves it.
type Server struct {
	cfg   Config
	ln    net.Listener
	limit *connLimit
	http  *http.Server
}

// ErrBadAddress is wrapped by New's error for an address that does not
// parse, so that callers can tell it from a bind failure.
var ErrBadAddress = errors.New("want host:port")

// New checks the address and binds it, so that a typo or a port in use is
// reported at start-up rather than when the first probe fails.
func New(cfg Config) (*Server, error) {
	if err := CheckAddr(cfg.Addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", cfg.Addr, err)
	}
	lim := newConnLimit(ln, cmp.Or(cfg.MaxConns, DefaultMaxConns), evictGrace)
	s := &Server{cfg: cfg, ln: lim, limit: lim}
	s.http = &http.Server{
		Handler:           lim.serving(s.routes()),
		ConnContext:       lim.connContext,
		ConnState:         lim.track,
		MaxHeaderBytes:    maxHeaderBytes,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
	}
	return s, nil
}

// What one peer of the status port may cost. Probes and scrapes send a
// few hundred bytes of header at once, so these bound a flood long before
// they bother a real client; net/http allows 1 MiB of header by default,
// which let a few hundred connections run moat out of memory.
const (
	// DefaultMaxConns is the connection cap when Config.MaxConns is 0:
	// far more than kubelets and scrapers hold open, few enough that the
	// connections cost a couple of megabytes and 64 goroutines at most.
	DefaultMaxConns = 64
	maxHeaderBytes  = 8 << 10
	// evictGrace is how long a connection may wait for its request before
	// a newer one can take its slot: ample for a probe's request already
	// sent, and it caps a flood at DefaultMaxConns/evictGrace connections a
	// second.
	evictGrace        = 100 * time.Millisecond
	readHeaderTimeout = 5 * time.Second
	// readTimeout bounds the whole request; the routes take no body. It
	// does not cut a long pprof profile short: net/http lifts the read
	// deadline once the handler runs.
	readTimeout = 10 * time.Second
	// writeTimeout bounds the answer: three times /metrics' own scrape
	// timeout. The pprof handlers that run for ?seconds= add that to it
	// themselves.
	writeTimeout = 30 * time.Second
	idleTimeout  = time.Minute
)

// CheckAddr reports, wrapping ErrBadAddress, an address New would refuse
// before binding.
func CheckAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: %w", addr, ErrBadAddress)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return fmt.Errorf("%q: bad port %q: %w", addr, port, ErrBadAddress)
	}
	return nil
}

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	s.ghostunnelRoutes(mux)
	if s.cfg.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{
			// A scrape that piles up behind a slow one only adds load.
			MaxRequestsInFlight: 4,
			Timeout:             10 * time.Second,
		}))
	}
	if s.cfg.EnablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// readyz answers 200 "ready" or 503 with why not, on one line: kubectl
// describe and load balancer logs show the body, and a reason there saves
// a trip to the logs.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	only := r.URL.Query().Get("service")
	if s.cfg.Services != nil && (s.cfg.Draining == nil || !s.cfg.Draining()) {
		reasons, known := s.cfg.Services(r.Context(), only)
		switch {
		case !known:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, "no service %.100q\n", only)
			return
		case len(reasons) > 0:
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready: "+strings.Join(reasons, "; "))
			return
		}
		fmt.Fprintln(w, "ready")
		return
	}
	if reason := s.notReady(r.Context()); reason != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, reason)
		return
	}
	fmt.Fprintln(w, "ready")
}

// notReady returns why moat should not get traffic, or "".
func (s *Server) notReady(ctx context.Context) string {
	if s.cfg.Waiting != nil {
		if reason := s.cfg.Waiting(); reason != "" {
			return reason
		}
	}
	if s.cfg.Draining != nil && s.cfg.Draining() {
		return "draining: shutting down, not accepting new connections"
	}
	if s.cfg.CheckUpstream != nil {
		if err := s.cfg.CheckUpstream(ctx); err != nil {
			return "upstream unreachable: " + strings.Join(strings.Fields(err.Error()), " ")
		}
	}
	return ""
}

// Addr returns the bound address (useful with port 0).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until Close; it returns nil after Close, and any other error
// the HTTP server reports.
func (s *Server) Serve() error {
	if err := s.http.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close stops the server gracefully: the listener closes at once, requests
// in progress finish until ctx ends. It closes the listener even if Serve
// was never called.
func (s *Server) Close(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	s.ln.Close()
	return err
}
