package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/moat-proxy/moat/proxy"
)

var _ proxy.HeaderObserver = (*Metrics)(nil)

// headerRefusals are the reasons the proxy closes a connection at its PROXY
// protocol header; each series is exported as 0 from the start.
var headerRefusals = []proxy.HeaderRefusal{proxy.HeaderUntrusted, proxy.HeaderMissing, proxy.HeaderInvalid,
	proxy.HeaderTooLong, proxy.HeaderTimeout, proxy.HeaderTruncated}

// newHeaderRefused makes moat_proxy_header_refused_total and its children.
func newHeaderRefused(labels prometheus.Labels) (*prometheus.CounterVec, map[proxy.HeaderRefusal]prometheus.Counter) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "moat_proxy_header_refused_total",
		Help: "Connections closed at their PROXY protocol header (--accept-proxy-protocol), by reason: untrusted (a header from outside the trusted ranges), missing, invalid, too_long, timeout, truncated.", ConstLabels: labels},
		[]string{"reason"})
	children := make(map[proxy.HeaderRefusal]prometheus.Counter, len(headerRefusals))
	for _, r := range headerRefusals {
		children[r] = vec.WithLabelValues(r.String())
	}
	return vec, children
}

// HeaderRefused counts a connection closed at its PROXY protocol header.
func (m *Metrics) HeaderRefused(r proxy.HeaderRefusal) {
	if c := m.headerRefused[r]; c != nil {
		c.Inc()
	}
}
