package cmd

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/moat-proxy/moat/proxy"
	"github.com/moat-proxy/moat/proxyproto"
	"github.com/moat-proxy/moat/upstream"
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

// newTestProxy binds a proxy on a free port in front of target and serves
// it until the test ends.
func newTestProxy(t *testing.T, target upstream.Target, obs proxy.Observer) *proxy.Server {
	t.Helper()
	listen, err := upstream.ParseTarget("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(proxy.Config{Mode: proxy.ModeServer, Listen: listen, Target: target,
		TLS: &tls.Config{}, Loops: 1, Log: zerolog.Nop(), Observer: obs})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
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
	stop, err := s.start(zerolog.Nop(), nil, upstream.Target{}, nil)
	if err != nil || stop == nil {
		t.Fatalf("start without --status = %v", err)
	}
	stop(context.Background())
	_, err = parseStatusFlags(t, "--enable-pprof").start(zerolog.Nop(), nil, upstream.Target{}, nil)
	if err == nil || !strings.Contains(err.Error(), "--enable-pprof") {
		t.Errorf("--enable-pprof without --status = %v, want an error naming the flag", err)
	}
}

func TestStatusFlagErrorsNameTheFlag(t *testing.T) {
	target, _ := upstream.ParseTarget("127.0.0.1:9")
	s := parseStatusFlags(t, "--status", "localhost")
	srv := newTestProxy(t, target, s.observer())
	_, err := s.start(zerolog.Nop(), srv, target, nil)
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
	_, err = s.start(zerolog.Nop(), srv, target, nil)
	if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "--status") || !strings.Contains(err.Error(), "in use") {
		t.Errorf("--status on a port in use = %v, want a start-up error naming --status", err)
	}
}

// TestStatusPortFollowsUpstreamAndShutdown wires the status port to a real
// proxy.Server as runProxy does and checks readiness against a real upstream
// socket, the reload counter, and the flip to 503 when Shutdown begins.
func TestStatusPortFollowsUpstreamAndShutdown(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	target, _ := upstream.ParseTarget(up.Addr().String())
	s := parseStatusFlags(t, "--status", "127.0.0.1:0")
	srv := newTestProxy(t, target, s.observer())
	stop, err := s.start(zerolog.Nop(), srv, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stop(context.Background())
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

	// A signal during --shutdown-delay: still accepting, no longer ready.
	stopping.Store(true)
	code, body = httpGet(t, base+"/readyz")
	stopping.Store(false)
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "draining") {
		t.Errorf("/readyz once a signal arrived = %d %q, want 503 draining", code, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if code, body := httpGet(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "draining") {
		t.Errorf("/readyz after Shutdown = %d %q, want 503 draining", code, body)
	}
}

func TestReadinessProbeSendsLocalHeaderWhenUpstreamExpectsPROXY(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	target, _ := upstream.ParseTarget(up.Addr().String())
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
	if err := dialCheck(target, 2)(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b := <-got; string(b) != string(proxyproto.V2Local()) {
		t.Errorf("probe sent %x, want a v2 LOCAL header %x", b, proxyproto.V2Local())
	}
}
