package status

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/moat-proxy/moat/metrics"
)

// start runs a status server on a free loopback port and stops it when the
// test ends, checking that Serve returned cleanly.
func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

func get(t *testing.T, s *Server, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + s.Addr().String() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

// dialCheck is the check cmd gives: a real connect with a short timeout.
func dialCheck(addr string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// oneLine checks that a 503 body is exactly one line naming the reason.
func oneLine(t *testing.T, body, want string) {
	t.Helper()
	if strings.Count(body, "\n") != 1 || !strings.HasSuffix(body, "\n") || !strings.Contains(body, want) {
		t.Errorf("body %q: want one line containing %q", body, want)
	}
}

func TestReadyzFlipsOnDrainingAndUnreachableUpstream(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	upAddr := up.Addr().String()
	var draining atomic.Bool
	s := start(t, Config{Draining: draining.Load, CheckUpstream: dialCheck(upAddr)})

	if code, body := get(t, s, "/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Fatalf("upstream listening: /readyz = %d %q, want 200 ready", code, body)
	}
	up.Close() // nothing listens on upAddr now: connects are refused
	code, body := get(t, s, "/readyz")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("upstream down: /readyz = %d, want 503", code)
	}
	oneLine(t, body, "upstream unreachable")
	if code, _ := get(t, s, "/healthz"); code != http.StatusOK {
		t.Errorf("upstream down: /healthz = %d, want 200: liveness must not follow the upstream", code)
	}

	draining.Store(true)
	code, body = get(t, s, "/readyz")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("draining: /readyz = %d, want 503", code)
	}
	oneLine(t, body, "draining")
}

func TestReadyzWithHealthyUpstreamAndNotDraining(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	var draining atomic.Bool
	s := start(t, Config{Draining: draining.Load, CheckUpstream: Cached(time.Second, dialCheck(up.Addr().String()))})
	for i := 0; i < 3; i++ {
		if code, body := get(t, s, "/readyz"); code != http.StatusOK {
			t.Fatalf("/readyz = %d %q, want 200", code, body)
		}
	}
	draining.Store(true)
	if code, _ := get(t, s, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("draining with a cached healthy upstream: /readyz = %d, want 503 at once", code)
	}
}

func TestMetricsEndpointServesParsableTextThatMoves(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	s := start(t, Config{Gatherer: reg})
	scrape := func() float64 {
		code, body := get(t, s, "/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics = %d", code)
		}
		parser := expfmt.NewTextParser(model.LegacyValidation)
		fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
		if err != nil {
			t.Fatalf("/metrics does not parse: %v", err)
		}
		f, ok := fams["moat_connections_total"]
		if !ok {
			t.Fatal("no moat_connections_total")
		}
		return f.Metric[0].GetCounter().GetValue()
	}
	before := scrape()
	m.Accepted()
	m.Accepted()
	if after := scrape(); after != before+2 {
		t.Errorf("moat_connections_total went %v → %v after 2 accepts", before, after)
	}
}

func TestPprofOnlyWhenEnabled(t *testing.T) {
	off := start(t, Config{})
	if code, _ := get(t, off, "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("pprof disabled: /debug/pprof/ = %d, want 404", code)
	}
	if code, _ := get(t, off, "/debug/pprof/cmdline"); code != http.StatusNotFound {
		t.Errorf("pprof disabled: /debug/pprof/cmdline = %d, want 404", code)
	}
	on := start(t, Config{EnablePprof: true})
	if code, body := get(t, on, "/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("pprof enabled: /debug/pprof/ = %d, want 200 with the profile index", code)
	}
}

func TestNewRejectsBadAddressAndPortInUse(t *testing.T) {
	for _, addr := range []string{"", "9090", "localhost", "127.0.0.1:http-alt-nope", "127.0.0.1:70000"} {
		if _, err := New(Config{Addr: addr}); !errors.Is(err, ErrBadAddress) {
			t.Errorf("New(%q) = %v, want ErrBadAddress", addr, err)
		}
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, err = New(Config{Addr: taken.Addr().String()})
	if err == nil || errors.Is(err, ErrBadAddress) || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("New on a port in use = %v, want a bind error", err)
	}
}

func TestCloseStopsListening(t *testing.T) {
	s, err := New(Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	addr := s.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve after Close = %v, want nil", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("status port still accepts after Close")
	}
}

// TestCachedCheckRunsOncePerTTLAndIgnoresCancelledProbes runs in a synctest
// bubble, whose clock moves only when every goroutine in it waits: the TTL
// is crossed exactly, not by a sleep that a loaded machine can stretch.
func TestCachedCheckRunsOncePerTTLAndIgnoresCancelledProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 200 * time.Millisecond
		var calls atomic.Int32
		check := Cached(ttl, func(ctx context.Context) error {
			calls.Add(1)
			return ctx.Err()
		})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		for i := 0; i < 10; i++ {
			if err := check(ctx); err != nil {
				t.Fatalf("check with a cancelled probe context = %v, want the check's own result", err)
			}
		}
		if n := calls.Load(); n != 1 {
			t.Errorf("10 probes within the TTL ran the check %d times, want 1", n)
		}
		time.Sleep(ttl - time.Nanosecond)
		check(context.Background())
		if n := calls.Load(); n != 1 {
			t.Errorf("a probe just inside the TTL: %d checks, want 1", n)
		}
		time.Sleep(time.Nanosecond)
		check(context.Background())
		if n := calls.Load(); n != 2 {
			t.Errorf("a probe at the TTL: %d checks, want 2", n)
		}
	})
}

// TestReadyzSaysWhatItWaitsFor: a Waiting reason fails readiness with that
// reason as the body, ahead of the draining a not-yet-serving runner
// reports; an empty reason leaves readiness to the other checks.
func TestReadyzSaysWhatItWaitsFor(t *testing.T) {
	var reason atomic.Value
	reason.Store("waiting for an SVID from the Workload API")
	var draining atomic.Bool
	draining.Store(true) // the runner is not serving yet
	s := start(t, Config{Waiting: func() string { return reason.Load().(string) }, Draining: draining.Load})
	code, body := get(t, s, "/readyz")
	if code != http.StatusServiceUnavailable {
		t.Fatalf("waiting: /readyz = %d, want 503", code)
	}
	oneLine(t, body, "waiting for an SVID from the Workload API")
	reason.Store("")
	draining.Store(false)
	if code, body := get(t, s, "/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Fatalf("no longer waiting: /readyz = %d %q, want 200 ready", code, body)
	}
}
