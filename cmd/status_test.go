package cmd

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/moat-proxy/moat/endpoint"
	"github.com/moat-proxy/moat/proxy"
	"github.com/moat-proxy/moat/proxyproto"
	"github.com/moat-proxy/moat/runner"
)

func parseStatusFlags(t *testing.T, args ...string) *statusOptions {
	t.Helper()
	s := &statusOptions{}
	f := pflag.NewFlagSet("test", pflag.ContinueOnError)
	s.register(f)
	if err := f.Parse(args); err != nil {
		t.Fatal(err)
	}
	return s
}

// newTestProxy binds a proxy on a free port in front of target; the test
// serves it.
// parseTarget returns the resolver a proxy dials s through.
func parseTarget(t *testing.T, s string) *endpoint.Resolver {
	t.Helper()
	a, err := endpoint.ParseTarget(s)
	if err != nil {
		t.Fatal(err)
	}
	return endpoint.NewResolver(a)
}

func newTestProxy(t *testing.T, target *endpoint.Resolver, obs proxy.Observer) *proxy.Server {
	t.Helper()
	listen, err := endpoint.ParseTarget("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(proxy.Config{Mode: proxy.ModeServer, Listen: listen, Target: target,
		TLS: &tls.Config{}, Loops: 1, Log: zerolog.Nop(), Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestStatusFlagsOffByDefault(t *testing.T) {
	s := parseStatusFlags(t)
	if s.observer() != nil {
		t.Error("observer without --status: want nil, so the proxy keeps its no-op observer")
	}
	if s.port(zerolog.Nop(), nil, nil) != nil {
		t.Error("status port without --status: want none")
	}
	if err := s.check(); err != nil {
		t.Errorf("check without --status = %v", err)
	}
	err := parseStatusFlags(t, "--enable-pprof").check()
	if err == nil || !strings.Contains(err.Error(), "--enable-pprof") {
		t.Errorf("--enable-pprof without --status = %v, want an error naming the flag", err)
	}
}

func TestStatusFlagErrorsNameTheFlag(t *testing.T) {
	target := parseTarget(t, "127.0.0.1:9")
	ready := func() bool { return true }
	s := parseStatusFlags(t, "--status", "localhost")
	_, err := s.open(zerolog.Nop(), ready, target, nil)
	var ue usageError
	if err == nil || !errors.As(err, &ue) || !strings.HasPrefix(err.Error(), "--status: ") {
		t.Errorf("bad --status address = %v, want a usage error naming --status", err)
	}

	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	s = parseStatusFlags(t, "--status", taken.Addr().String())
	_, err = s.open(zerolog.Nop(), ready, target, nil)
	if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "--status") || !strings.Contains(err.Error(), "in use") {
		t.Errorf("--status on a port in use = %v, want a start-up error naming --status", err)
	}
}

// TestStatusPortFollowsUpstreamAndShutdown wires the status port to a real
// proxy.Server under the runner as runProxy does, and checks readiness
// against a real upstream socket, the reload counter, and the flip to 503
// at the shutdown signal, which lasts through the delay and the drain.
func TestStatusPortFollowsUpstreamAndShutdown(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	target := parseTarget(t, up.Addr().String())
	s := parseStatusFlags(t, "--status", "127.0.0.1:0")
	srv := newTestProxy(t, target, s.observer())
	sigs := make(chan os.Signal, 1)
	r := runner.New(runner.Options{Services: []runner.Service{{Server: srv}}, Status: s.port(zerolog.Nop(), target, nil),
		ShutdownDelay: 300 * time.Millisecond, ShutdownTimeout: 5 * time.Second, Signals: sigs, Log: zerolog.Nop()})
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	for !r.Ready() {
		time.Sleep(time.Millisecond)
	}
	base := "http://" + s.run.server.Addr().String()

	if code, body := httpGet(t, base+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz with the upstream listening = %d %q", code, body)
	}
	s.onReload(nil, func(error) {})(errors.New("bad PEM"))
	if _, body := httpGet(t, base+"/metrics"); !strings.Contains(body, `moat_reloads_total{result="failure"} 1`) {
		t.Errorf("reload failure not counted in /metrics")
	}

	up.Close()
	// The good result stays cached for upstreamCheckTTL: poll past it.
	var code int
	var body string
	for deadline := time.Now().Add(upstreamCheckTTL + 5*time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if code, body = httpGet(t, base+"/readyz"); code != http.StatusOK {
			break
		}
	}
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "upstream unreachable") {
		t.Errorf("/readyz with the upstream gone = %d %q, want 503 upstream unreachable", code, body)
	}

	// A connection that has not finished its handshake keeps the drain
	// going until it hangs up.
	open, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	sigs <- syscall.SIGTERM
	// During --shutdown-delay: still accepting, no longer ready.
	code, body = httpGet(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "draining") || srv.Draining() {
		t.Errorf("/readyz once a signal arrived = %d %q (proxy draining %v), want 503 draining while still accepting", code, body, srv.Draining())
	}
	for !srv.Draining() {
		time.Sleep(10 * time.Millisecond)
	}
	if code, body := httpGet(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "draining") {
		t.Errorf("/readyz while the proxy drains = %d %q, want 503 draining", code, body)
	}
	open.Close()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v after the last connection closed, want nil", err)
	}
}

func TestReadinessProbeSendsLocalHeaderWhenUpstreamExpectsPROXY(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	target := parseTarget(t, up.Addr().String())
	got := make(chan []byte, 1)
	go func() {
		c, err := up.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c)
		got <- b
	}()
	if err := dialCheck(target.Address(), 2)(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b := <-got; string(b) != string(proxyproto.V2Local()) {
		t.Errorf("probe sent %x, want a v2 LOCAL header %x", b, proxyproto.V2Local())
	}
}
