package status

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moat-proxy/moat/metrics"
)

// TestGhostunnelMetricsJSONMovesWithTheCounters: /_metrics and
// /_metrics/json list every sample with its labels, and the values are
// the registry's; a histogram gives _count and _sum; the Prometheus forms
// are the same text as /metrics.
func TestGhostunnelMetricsJSONMovesWithTheCounters(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	s := start(t, Config{Gatherer: reg})
	sample := func(path, name string, labels map[string]string) float64 {
		code, body := get(t, s, path)
		var samples []metricSample
		if err := json.Unmarshal([]byte(body), &samples); code != http.StatusOK || err != nil {
			t.Fatalf("%s: %d %v", path, code, err)
		}
		for _, x := range samples {
			if x.Metric != name || x.Timestamp == 0 {
				continue
			}
			match := true
			for k, v := range labels {
				match = match && x.Labels[k] == v
			}
			if match {
				return x.Value
			}
		}
		t.Fatalf("%s has no %s%v", path, name, labels)
		return 0
	}
	before := sample("/_metrics", "moat_connections_total", nil)
	m.Accepted()
	m.Accepted()
	m.Handshake(nil, time.Millisecond, errTest)
	if after := sample("/_metrics/json", "moat_connections_total", nil); after != before+2 {
		t.Fatalf("moat_connections_total %v -> %v after 2 accepts", before, after)
	}
	if v := sample("/_metrics", "moat_handshakes_total", map[string]string{"result": "error"}); v != 1 {
		t.Fatalf("moat_handshakes_total{result=error} = %v", v)
	}
	sample("/_metrics", "moat_handshake_duration_seconds_count", nil)
	sample("/_metrics", "moat_fips140_enabled", nil)
	for _, path := range []string{"/_metrics/prometheus", "/_metrics?format=prometheus"} {
		if code, body := get(t, s, path); code != http.StatusOK || !strings.Contains(body, "moat_connections_total 2") {
			t.Fatalf("%s: %d\n%.300s", path, code, body)
		}
	}
}

type testError struct{}

func (testError) Error() string { return "test handshake failure" }

var errTest = testError{}

// TestGhostunnelStatusFollowsReadiness: /_status says what /readyz says,
// as ghostunnel's JSON: 200 and ok, 503 and "stopping" while draining.
func TestGhostunnelStatusFollowsReadiness(t *testing.T) {
	var draining atomic.Bool
	s := start(t, Config{Draining: draining.Load, Described: Described{Mode: "client", Listen: "127.0.0.1:1", Target: "db:5432"}})
	var st statusReply
	code, body := get(t, s, "/_status")
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != 200 || !st.OK || st.Status != "ok" || st.Mode != "client" || st.ForwardAddress != "db:5432" || st.Compiler == "" {
		t.Fatalf("/_status %d %s", code, body)
	}
	draining.Store(true)
	code, body = get(t, s, "/_status")
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != 503 || st.OK || st.Message != "stopping" || st.Status != "critical" {
		t.Fatalf("/_status while draining %d %s", code, body)
	}
}
