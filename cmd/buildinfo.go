package cmd

import "github.com/prometheus/client_golang/prometheus"

// registerBuildInfo adds moat_build_info to reg: a gauge that is always 1,
// whose labels say which build is running, for joins in queries such as
// "which pods still run the old version".
func registerBuildInfo(reg prometheus.Registerer) {
	b := currentBuild()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "moat_build_info",
		Help:        "Always 1; the labels say which moat build is running.",
		ConstLabels: prometheus.Labels{"version": b.Version, "commit": b.Commit, "goversion": b.GoVersion},
	})
	g.Set(1)
	reg.MustRegister(g)
}
