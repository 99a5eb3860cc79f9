package metrics

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/moat-proxy/moat/certs"
	"github.com/moat-proxy/moat/proxy"
)

// scrape serves reg through promhttp in the text format and parses the
// answer with the client library's own parser, as a Prometheus server would.
func scrape(t *testing.T, reg prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}).ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: status %d: %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse as text exposition: %v", err)
	}
	return fams
}

// value returns the counter, gauge or histogram count of the series of
// family name whose labels include every name=value pair in labels.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric family %s", name)
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

func TestMetricsMoveWithObserverEvents(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg)
	var o proxy.Observer = m

	o.Accepted()
	o.Accepted()
	o.Accepted()
	o.Refused(proxy.LimitConns)
	o.Refused(proxy.LimitHandshakeRate)
	o.Handshake(&tls.ConnectionState{Version: tls.VersionTLS13, CurveID: tls.X25519MLKEM768}, 3*time.Millisecond, nil)
	o.Handshake(&tls.ConnectionState{Version: tls.VersionTLS12, DidResume: true}, time.Millisecond, nil)
	o.Handshake(&tls.ConnectionState{Version: tls.VersionTLS12, CurveID: tls.CurveP256}, time.Millisecond, nil)
	o.Handshake(&tls.ConnectionState{Version: tls.VersionTLS13, CurveID: 0x1234}, time.Millisecond, nil)
	o.Handshake(nil, 10*time.Second, fmt.Errorf("%w within 10s", proxy.ErrHandshakeTimeout))
	o.Handshake(nil, time.Millisecond, &certs.AuthError{Reason: certs.ReasonNotAllowed})
	o.DialFailed(errors.New("connection refused"))
	o.Relayed(100, 0)
	o.Relayed(20, 4000)
	o.Closed(&proxy.Summary{})
	m.CertificateLoaded(time.Unix(1893456000, 0))
	m.Reload(nil)
	m.Reload(errors.New("bad PEM"))
	m.CRLsLoaded(map[string]time.Time{"/etc/moat/ca.crl": time.Unix(1893456000, 0)})

	fams := scrape(t, reg)
	checks := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"moat_connections_total", nil, 3},
		{"moat_connections_active", nil, 2},
		{"moat_connections_refused_total", []string{"reason", "max-conns"}, 1},
		{"moat_connections_refused_total", []string{"reason", "handshake-rate"}, 1},
		{"moat_connections_refused_total", []string{"reason", "max-handshakes"}, 0},
		{"moat_handshakes_total", []string{"result", "ok", "version", "1.3", "group", "X25519MLKEM768"}, 1},
		{"moat_handshakes_total", []string{"result", "ok", "version", "1.3", "group", "X25519"}, 0},
		{"moat_handshakes_total", []string{"result", "ok", "version", "1.3", "group", "other"}, 1},
		{"moat_handshakes_total", []string{"result", "ok", "version", "1.2", "group", "none"}, 1},
		{"moat_handshakes_total", []string{"result", "ok", "version", "1.2", "group", "CurveP256"}, 1},
		{"moat_handshakes_total", []string{"result", "error", "version", "unknown", "group", "unknown"}, 2},
		{"moat_handshake_errors_total", []string{"reason", ReasonTimeout}, 1},
		{"moat_handshake_errors_total", []string{"reason", ReasonNotAllowed}, 1},
		{"moat_handshake_errors_total", []string{"reason", ReasonUnknownCA}, 0},
		{"moat_handshake_duration_seconds", nil, 4},
		{"moat_sessions_resumed_total", nil, 1},
		{"moat_upstream_dial_errors_total", nil, 1},
		{"moat_bytes_total", []string{"direction", "from_client"}, 120},
		{"moat_bytes_total", []string{"direction", "to_client"}, 4000},
		{"moat_certificate_expiry_timestamp_seconds", nil, 1893456000},
		{"moat_reloads_total", []string{"result", "success"}, 1},
		{"moat_reloads_total", []string{"result", "failure"}, 1},
		{"moat_crl_next_update_timestamp_seconds", []string{"file", "/etc/moat/ca.crl"}, 1893456000},
		{"moat_handshake_errors_total", []string{"reason", ReasonRevoked}, 0},
	}
	for _, c := range checks {
		if got := value(t, fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, runtime := range []string{"go_goroutines", "process_open_fds"} {
		if _, ok := fams[runtime]; !ok {
			t.Errorf("no %s: Go runtime or process collector missing", runtime)
		}
	}
}

// TestObserverHooksDoNotAllocate guards the data path: the loops call these
// for every connection and every relayed batch. A failed handshake is left
// out: classifying it uses errors.As, whose targets escape to the heap, and
// the connection it ends has cost far more than those few allocations.
func TestObserverHooksDoNotAllocate(t *testing.T) {
	m := New(prometheus.NewRegistry())
	ok := &tls.ConnectionState{Version: tls.VersionTLS13}
	failure := errors.New("dial: connection refused")
	sum := &proxy.Summary{}
	m.Refused(proxy.LimitConns) // the first refusal of a reason makes its child
	allocs := testing.AllocsPerRun(1000, func() {
		m.Accepted()
		m.Refused(proxy.LimitConns)
		m.Handshake(ok, time.Millisecond, nil)
		m.DialFailed(failure)
		m.Relayed(512, 1024)
		m.Closed(sum)
	})
	if allocs != 0 {
		t.Errorf("observer hooks allocate %v times per connection, want 0", allocs)
	}
}

func TestNewRefusesSecondRegistrationOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg)
	defer func() {
		if recover() == nil {
			t.Error("second New on the same registry did not panic")
		}
	}()
	New(reg)
}
