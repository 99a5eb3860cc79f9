package status

import (
	"encoding/json"
	"math"
	"net/http"
	"os"
	"runtime"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// ghostunnel's status paths, served beside moat's own so that probes and
// scrapers written for ghostunnel keep working:
//
//	GET /_status              JSON; 200 when ready, 503 otherwise (the same judgement as /readyz)
//	GET /_metrics             JSON array of every metric sample (?format=prometheus: the text form)
//	GET /_metrics/json        the same JSON
//	GET /_metrics/prometheus  Prometheus text, as /metrics

// Described is what /_status reports about the proxy besides readiness.
type Described struct {
	Mode, Listen, Target string
	Revision             string
	LastReload           func() time.Time // zero time: none yet; nil: none
}

// statusReply is /_status's body, in ghostunnel's field names.
type statusReply struct {
	OK             bool      `json:"ok"`
	Status         string    `json:"status"` // "ok" or "critical"
	Mode           string    `json:"mode,omitempty"`
	ListenAddress  string    `json:"listen_address"`
	ForwardAddress string    `json:"forward_address"`
	BackendOK      bool      `json:"backend_ok"`
	BackendStatus  string    `json:"backend_status"`
	BackendError   string    `json:"backend_error,omitempty"`
	Time           time.Time `json:"time"`
	LastReload     time.Time `json:"last_reload"`
	Hostname       string    `json:"hostname,omitempty"`
	Message        string    `json:"message"` // "listening" or "stopping"
	Revision       string    `json:"revision"`
	Compiler       string    `json:"compiler"`
}

// metricSample is one element of /_metrics' JSON array. Labels tell apart
// the samples of one metric; a histogram gives its _count and _sum.
type metricSample struct {
	Timestamp int64             `json:"timestamp"`
	Metric    string            `json:"metric"`
	Labels    map[string]string `json:"labels,omitempty"`
	Value     float64           `json:"value"`
	Hostname  string            `json:"hostname,omitempty"`
}

// maxJSONScrapes bounds concurrent /_metrics renderings, as /metrics is.
const maxJSONScrapes = 4

func (s *Server) ghostunnelRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /_status", s.ghostunnelStatus)
	if s.cfg.Gatherer == nil {
		return
	}
	prom := promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{MaxRequestsInFlight: maxJSONScrapes, Timeout: 10 * time.Second})
	scrapes := make(chan struct{}, maxJSONScrapes)
	asJSON := func(w http.ResponseWriter, r *http.Request) {
		select {
		case scrapes <- struct{}{}:
			defer func() { <-scrapes }()
		default:
			http.Error(w, "too many metrics requests in flight", http.StatusServiceUnavailable)
			return
		}
		s.metricsJSON(w)
	}
	mux.HandleFunc("GET /_metrics", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("format") == "prometheus" {
			prom.ServeHTTP(w, r)
			return
		}
		asJSON(w, r)
	})
	mux.HandleFunc("GET /_metrics/json", asJSON)
	mux.Handle("GET /_metrics/prometheus", prom)
}

func (s *Server) ghostunnelStatus(w http.ResponseWriter, r *http.Request) {
	d := s.cfg.Described
	reply := statusReply{
		OK: true, Status: "ok", Mode: d.Mode, ListenAddress: d.Listen, ForwardAddress: d.Target,
		BackendOK: true, BackendStatus: "ok", Time: time.Now(), Message: "listening",
		Revision: d.Revision, Compiler: runtime.Version(),
	}
	reply.Hostname, _ = os.Hostname()
	if d.LastReload != nil {
		reply.LastReload = d.LastReload()
	}
	if s.cfg.Draining != nil && s.cfg.Draining() {
		reply.OK, reply.Status, reply.Message = false, "critical", "stopping"
	} else if s.cfg.CheckUpstream != nil {
		if err := s.cfg.CheckUpstream(r.Context()); err != nil {
			reply.OK, reply.Status = false, "critical"
			reply.BackendOK, reply.BackendStatus, reply.BackendError = false, "critical", err.Error()
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !reply.OK {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	json.NewEncoder(w).Encode(reply)
}

func (s *Server) metricsJSON(w http.ResponseWriter) {
	families, err := s.cfg.Gatherer.Gather()
	if err != nil && len(families) == 0 {
		http.Error(w, "gathering metrics failed", http.StatusInternalServerError)
		return
	}
	now := time.Now().Unix()
	host, _ := os.Hostname()
	out := []metricSample{}
	add := func(name string, labels map[string]string, v float64) {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return // JSON has no spelling for them
		}
		out = append(out, metricSample{Timestamp: now, Metric: name, Labels: labels, Value: v, Hostname: host})
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := labelMap(m.GetLabel())
			switch {
			case m.Counter != nil:
				add(f.GetName(), labels, m.Counter.GetValue())
			case m.Gauge != nil:
				add(f.GetName(), labels, m.Gauge.GetValue())
			case m.Untyped != nil:
				add(f.GetName(), labels, m.Untyped.GetValue())
			case m.Histogram != nil:
				add(f.GetName()+"_count", labels, float64(m.Histogram.GetSampleCount()))
				add(f.GetName()+"_sum", labels, m.Histogram.GetSampleSum())
			case m.Summary != nil:
				add(f.GetName()+"_count", labels, float64(m.Summary.GetSampleCount()))
				add(f.GetName()+"_sum", labels, m.Summary.GetSampleSum())
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Metric < out[j].Metric })
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(out)
}

func labelMap(pairs []*dto.LabelPair) map[string]string {
	if len(pairs) == 0 {
		return nil
	}
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		m[p.GetName()] = p.GetValue()
	}
	return m
}
