package metrics

import (
	"crypto/fips140"

	"github.com/prometheus/client_golang/prometheus"
)

// fipsGauge is moat_fips140_enabled: 1 when Go's FIPS 140-3 module is in
// use (GODEBUG=fips140=on or only), 0 otherwise. The mode is fixed at
// start, so a constant gauge says all there is to say.
func fipsGauge() prometheus.Collector {
	v := 0.0
	if fips140.Enabled() {
		v = 1
	}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "moat_fips140_enabled",
		Help: "1 when moat runs in FIPS 140-3 mode (GODEBUG=fips140=on or only), 0 otherwise."},
		func() float64 { return v })
}
