// Package metrics turns moat's proxy events into Prometheus metrics. A
// *Metrics is the proxy.Observer the event loops call, so every hook is a
// few atomic adds on label children resolved when the Metrics is built:
// no map lookups, no allocation, no locks on the data path.
//
// Typical use:
//
//	reg := prometheus.NewRegistry()
//	m := metrics.New(reg)
//	srv, _ := proxy.New(proxy.Config{..., Observer: m})
//	m.CertificateLoaded(src.NotAfter())
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//	// after each certificate reload:
//	m.Reload(err)
package metrics

import (
	"crypto/tls"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/moat-proxy/moat/proxy"
	"github.com/moat-proxy/moat/tlsstate"
)

// Metrics holds moat's collectors and implements proxy.Observer.
type Metrics struct {
	connections     prometheus.Counter
	active          prometheus.Gauge
	refused         *prometheus.CounterVec
	refusedChildren sync.Map // reason string → prometheus.Counter
	handshakeOK     map[okKey]prometheus.Counter
	handshakes      *prometheus.CounterVec
	handshakeFailed prometheus.Counter
	handshakeErrors map[string]prometheus.Counter
	duration        prometheus.Histogram
	fromClient      prometheus.Counter
	toClient        prometheus.Counter
	dialErrors      prometheus.Counter
	resumed         prometheus.Counter
	certExpiry      prometheus.Gauge
	crlNextUpdate   *prometheus.GaugeVec
	reloadOK        prometheus.Counter
	reloadFailed    prometheus.Counter
	evicted         map[string]prometheus.Counter
	headerRefused   map[proxy.HeaderRefusal]prometheus.Counter
}

var _ proxy.Observer = (*Metrics)(nil)

// tlsVersions are the versions the handshakes_total children are made for.
// Their label is the number alone ("1.3"), the form people type in queries.
var tlsVersions = map[uint16]string{
	tls.VersionTLS10: "1.0", tls.VersionTLS11: "1.1",
	tls.VersionTLS12: "1.2", tls.VersionTLS13: "1.3",
}

// okKey picks the moat_handshakes_total child of a successful handshake.
type okKey struct{ version, group uint16 }

// tlsGroups are the key-exchange groups the handshakes_total children are
// made for, by Go's name ("X25519MLKEM768"). A handshake without a key
// exchange (a TLS 1.2 resumption) has group "none"; a group outside the
// table, "other".
var tlsGroups = []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024,
	tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521, 0}

// hybridGroups are the post-quantum hybrid groups, TLS 1.3 only.
var hybridGroups = map[tls.CurveID]bool{tls.X25519MLKEM768: true, tls.SecP256r1MLKEM768: true, tls.SecP384r1MLKEM1024: true}

func groupLabel(g tls.CurveID) string {
	if g == 0 {
		return "none"
	}
	return g.String()
}

// refusalReasons are the limits the proxy refuses connections for today
// (proxy/accept.go); a reason added there still gets its own series, made at
// its first refusal.
var refusalReasons = []string{proxy.LimitConns.String(), proxy.LimitHandshakes.String(),
	proxy.LimitHandshakesPerSource.String(), proxy.LimitHandshakeRate.String()}

// evictionReasons are the limits the proxy evicts unfinished handshakes for.
var evictionReasons = []string{proxy.LimitHandshakes.String(), proxy.LimitHandshakesPerSource.String(),
	proxy.LimitHandshakeMemory.String()}

// handshakeBuckets are the moat_handshake_duration_seconds buckets: a local
// handshake takes about a millisecond, one over a slow mobile link a second,
// and the default handshake timeout is 10s.
var handshakeBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// New builds moat's metrics and registers them, with the Go runtime and
// process collectors, on reg. Like prometheus.MustRegister it panics if a
// name is already registered there, which is a programming error. A nil reg
// registers nothing (for tests of the hooks alone).
func New(reg prometheus.Registerer) *Metrics {
	m, perService := build(nil)
	process := m.processCollectors()
	if reg != nil {
		reg.MustRegister(append(perService, process...)...)
	}
	return m
}

// build makes the collectors of one service, each carrying labels (nil for
// a single-service process), and returns them for registering. The reload
// counters are made too; they are process-wide (see processCollectors).
func build(labels prometheus.Labels) (*Metrics, []prometheus.Collector) {
	m := &Metrics{
		connections: prometheus.NewCounter(prometheus.CounterOpts{Name: "moat_connections_total", Help: "Connections accepted.", ConstLabels: labels}),
		active:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "moat_connections_active", Help: "Connections open now.", ConstLabels: labels}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_connections_refused_total",
			Help: "Connections closed at accept because a limit was reached, by limit.", ConstLabels: labels}, []string{"reason"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "moat_handshake_duration_seconds",
			Help: "Time from accept (or dial) to a completed TLS handshake; failed handshakes are not observed.", Buckets: handshakeBuckets, ConstLabels: labels}),
		dialErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "moat_upstream_dial_errors_total", Help: "Failed connects to --target.", ConstLabels: labels}),
		resumed:    prometheus.NewCounter(prometheus.CounterOpts{Name: "moat_sessions_resumed_total", Help: "Handshakes that resumed an earlier TLS session.", ConstLabels: labels}),
		certExpiry: prometheus.NewGauge(prometheus.GaugeOpts{Name: "moat_certificate_expiry_timestamp_seconds",
			Help: "NotAfter of the certificate in service, as a Unix time.", ConstLabels: labels}),
		crlNextUpdate: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "moat_crl_next_update_timestamp_seconds",
			Help: "NextUpdate of the CRLs in service (--crl), the earliest of each file, as a Unix time; in the past means the CRL is stale.", ConstLabels: labels},
			[]string{"file"}),
	}
	handshakes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_handshakes_total",
		Help: "TLS handshakes finished, by result (ok, error), negotiated version and key-exchange group (unknown when failed).", ConstLabels: labels},
		[]string{"result", "version", "group"})
	m.handshakes = handshakes
	m.handshakeOK = make(map[okKey]prometheus.Counter, len(tlsVersions)*len(tlsGroups))
	// The versions moat accepts get their children at once; the others,
	// and hybrid groups under TLS 1.2, which has none, only if ever seen.
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		for _, g := range tlsGroups {
			if v == tls.VersionTLS13 || !hybridGroups[g] {
				m.handshakeOK[okKey{v, uint16(g)}] = handshakes.WithLabelValues("ok", tlsVersions[v], groupLabel(g))
			}
		}
	}
	m.handshakeFailed = handshakes.WithLabelValues("error", "unknown", "unknown")
	errorsVec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_handshake_errors_total",
		Help: "Failed TLS handshakes, by reason.", ConstLabels: labels}, []string{"reason"})
	m.handshakeErrors = make(map[string]prometheus.Counter, len(handshakeReasons))
	for _, r := range handshakeReasons {
		m.handshakeErrors[r] = errorsVec.WithLabelValues(r)
	}
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_bytes_total",
		Help: "Plaintext bytes relayed, by direction seen from the accepting side.", ConstLabels: labels}, []string{"direction"})
	m.fromClient, m.toClient = bytes.WithLabelValues("from_client"), bytes.WithLabelValues("to_client")
	for _, r := range refusalReasons {
		m.refusedChild(r) // exported as 0 from the start, like the handshake reasons
	}
	evicted := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_handshakes_evicted_total",
		Help: "Unfinished handshakes cut to make room for a new connection or to stay within the handshake memory budget, by limit.", ConstLabels: labels}, []string{"reason"})
	m.evicted = make(map[string]prometheus.Counter, len(evictionReasons))
	for _, r := range evictionReasons {
		m.evicted[r] = evicted.WithLabelValues(r)
	}
	headerRefused, children := newHeaderRefused(labels)
	m.headerRefused = children
	return m, []prometheus.Collector{m.connections, m.active, m.refused, handshakes, errorsVec, m.duration,
		bytes, m.dialErrors, m.resumed, m.certExpiry, m.crlNextUpdate, evicted, headerRefused}
}

// processCollectors makes what a process has once, whatever its services:
// the reload counters (kept in m), the TLS buffer gauge, and the Go runtime
// and process collectors.
func (m *Metrics) processCollectors() []prometheus.Collector {
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_reloads_total",
		Help: "Certificate and configuration reloads, by result (success, failure)."}, []string{"result"})
	m.reloadOK, m.reloadFailed = reloads.WithLabelValues("success"), reloads.WithLabelValues("failure")
	buffers := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "moat_tls_buffer_bytes",
		Help: "Bytes of TLS input and output buffers held by connections now; an idle connection holds none."},
		func() float64 { return float64(tlsstate.BufferBytes()) })
	return []prometheus.Collector{reloads, buffers, fipsGauge(),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}
}

// refusedChild returns the counter for a refusal reason. Reasons are few
// and fixed in the proxy, but not known here, so children are made on
// first use and cached; a sync.Map load on a string does not allocate.
func (m *Metrics) refusedChild(reason string) prometheus.Counter {
	if c, ok := m.refusedChildren.Load(reason); ok {
		return c.(prometheus.Counter)
	}
	c, _ := m.refusedChildren.LoadOrStore(reason, m.refused.WithLabelValues(reason))
	return c.(prometheus.Counter)
}

// Accepted counts a new connection.
func (m *Metrics) Accepted() {
	m.connections.Inc()
	m.active.Inc()
}

// Refused counts a connection closed at accept because of a limit.
func (m *Metrics) Refused(limit proxy.Limit) { m.refusedChild(limit.String()).Inc() }

// Evicted counts an unfinished handshake cut for a limit.
func (m *Metrics) Evicted(limit proxy.Limit) {
	if c := m.evicted[limit.String()]; c != nil {
		c.Inc()
	}
}

// Handshake counts a finished handshake: its version and duration when it
// succeeded, its classified reason (see HandshakeErrorReason) when not.
func (m *Metrics) Handshake(state *tls.ConnectionState, took time.Duration, err error) {
	if err != nil || state == nil {
		m.handshakeFailed.Inc()
		m.handshakeErrors[HandshakeErrorReason(err)].Inc()
		return
	}
	if c, ok := m.handshakeOK[okKey{state.Version, uint16(state.CurveID)}]; ok {
		c.Inc()
	} else {
		m.otherHandshake(state).Inc()
	}
	m.duration.Observe(took.Seconds())
	if state.DidResume {
		m.resumed.Inc()
	}
}

// otherHandshake is the child for a version or group outside the tables,
// made on first use: rare, so the lookup's allocation does not matter.
func (m *Metrics) otherHandshake(state *tls.ConnectionState) prometheus.Counter {
	version, ok := tlsVersions[state.Version]
	if !ok {
		version = "other"
	}
	group := "other"
	if slices.Contains(tlsGroups, state.CurveID) {
		group = groupLabel(state.CurveID)
	}
	return m.handshakes.WithLabelValues("ok", version, group)
}

// CRLsLoaded records the nextUpdate of the CRLs now in service: per file,
// the earliest of its CRLs. A CRL without one is not exported.
func (m *Metrics) CRLsLoaded(nextUpdate map[string]time.Time) {
	for file, t := range nextUpdate {
		if !t.IsZero() {
			m.crlNextUpdate.WithLabelValues(file).Set(float64(t.Unix()))
		}
	}
}

// DialFailed counts a failed connect to the far side.
func (m *Metrics) DialFailed(error) { m.dialErrors.Inc() }

// Relayed counts plaintext bytes delivered in each direction.
func (m *Metrics) Relayed(fromClient, toClient int) {
	if fromClient > 0 {
		m.fromClient.Add(float64(fromClient))
	}
	if toClient > 0 {
		m.toClient.Add(float64(toClient))
	}
}

// Closed takes a finished connection off the active gauge. Its bytes were
// counted as they were relayed, so that a long connection's traffic shows
// while it lasts rather than all at once at its end.
func (m *Metrics) Closed(*proxy.Summary) { m.active.Dec() }

// CertificateLoaded records the expiry of the certificate now in service.
// cmd calls it at start-up and after every successful reload.
func (m *Metrics) CertificateLoaded(notAfter time.Time) {
	if notAfter.IsZero() {
		return
	}
	m.certExpiry.Set(float64(notAfter.Unix()))
}

// Reload counts a certificate reload's outcome; a failed reload keeps the
// old certificate in service, so it does not touch the expiry gauge.
func (m *Metrics) Reload(err error) {
	if err != nil {
		m.reloadFailed.Inc()
		return
	}
	m.reloadOK.Inc()
}
