package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// column is one reported metric.
type column struct {
	key, title string
	higher     bool   // higher is better
	unit       string // for the ratio table
	format     string
	scale      float64 // shown value = median * scale
	util       string  // key of the proxy core's busy % during the same measurement, shown beside
}

// costColumns are the headline: what the proxy's own process spends per
// unit of work, each with how busy its core was while it was measured (a
// core far below 100 % means the load client set the pace, which leaves
// the cost per unit valid but makes throughput a measure of the client).
// Throughput on a machine whose load client saturates first measures the
// load generator; the CPU a proxy spends per byte and per handshake is
// what a sidecar's user pays for in every pod.
var costColumns = []column{
	{key: "up-cpu", title: "CPU s/GB up", unit: "s/GB", format: "%.2f", scale: 1, util: "up-util"},
	{key: "down-cpu", title: "CPU s/GB down", unit: "s/GB", format: "%.2f", scale: 1, util: "down-util"},
	{key: "hs13-cpu", title: "CPU µs per TLS 1.3 handshake", unit: "µs", format: "%.0f", scale: 1, util: "hs13-util"},
	{key: "pp1-added", title: "added p50 µs, 1 KiB echo, 1 conn", unit: "µs", format: "%.0f", scale: 1, util: "pp1-util"},
	{key: "idle", title: "bytes per idle conn", unit: "B", format: "%.0f", scale: 1},
}

// mainColumns are the throughput figures; cpuColumns explain them.
var mainColumns = []column{
	{"up", "bulk up MB/s", true, "MB/s", "%.0f", 1, ""},
	{"down", "bulk down MB/s", true, "MB/s", "%.0f", 1, ""},
	{"hs13", "hs/s TLS1.3", true, "hs/s", "%.0f", 1, ""},
	{"hs12", "hs/s TLS1.2", true, "hs/s", "%.0f", 1, ""},
	{"hslarge", "hs/s TLS1.3 large chain", true, "hs/s", "%.0f", 1, ""},
	{"pp1-p50", "1 KiB RTT p50 µs, 1 conn", false, "µs", "%.0f", 1, ""},
	{"pp1-p99", "p99 µs, 1 conn", false, "µs", "%.0f", 1, ""},
	{"pp16-p50", "p50 µs, 16 conns", false, "µs", "%.0f", 1, ""},
	{"pp16-p99", "p99 µs, 16 conns", false, "µs", "%.0f", 1, ""},
	{"idle", "idle RSS KB/conn", false, "KB", "%.1f", 1.0 / 1000, ""},
}

var cpuColumns = []column{
	{"hs12-cpu", "proxy CPU µs/hs TLS1.2", false, "µs", "%.0f", 1, "hs12-util"},
	{"hslarge-cpu", "proxy CPU µs/hs large chain", false, "µs", "%.0f", 1, "hslarge-util"},
}

// relayPeers are the peers moat is compared with; direct is a ceiling, not
// a peer (it relays nothing), and tcp-loopback is one plaintext leg.
var relayPeers = []string{"ghostunnel", "iocopy", "hitch", "haproxy", "stunnel"}

func median(v []float64) (float64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2], true
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2, true
}

func (c column) cell(r *peerResult) string {
	if r.missing != "" {
		return "–"
	}
	m, ok := median(r.samples[c.key])
	if !ok {
		return "n/a"
	}
	v := fmt.Sprintf(c.format, m*c.scale)
	if u, ok := median(r.samples[c.util]); ok && c.util != "" {
		v += fmt.Sprintf(" (%.0f %%)", u)
	}
	return v
}

// writeTable writes one markdown table of cols for every peer.
func writeTable(w io.Writer, cols []column, results []*peerResult) {
	fmt.Fprint(w, "| proxy |")
	for _, c := range cols {
		fmt.Fprintf(w, " %s |", c.title)
	}
	fmt.Fprint(w, "\n|---|")
	for range cols {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w)
	for _, r := range results {
		name := r.name
		if r.missing != "" {
			name += " (missing)"
			if r.name == "moat" {
				name = "moat (pending)"
			}
		}
		fmt.Fprintf(w, "| %s |", name)
		for _, c := range cols {
			fmt.Fprintf(w, " %s |", c.cell(r))
		}
		fmt.Fprintln(w)
	}
}

// best returns the best peer of names for c, by median.
func best(c column, results []*peerResult, names []string) (string, float64, bool) {
	bestName, bestVal, found := "", 0.0, false
	for _, r := range results {
		if r.missing != "" || !slices.Contains(names, r.name) {
			continue
		}
		m, ok := median(r.samples[c.key])
		if ok && (!found || c.higher && m > bestVal || !c.higher && m < bestVal) {
			bestName, bestVal, found = r.name, m, true
		}
	}
	return bestName, bestVal, found
}

// targets are issue 2's goals, as (ratio of moat to reference, reference).
var targets = map[string]string{
	"up":       "≥ 1.2× best peer",
	"down":     "≥ 1.2× best peer",
	"hs13":     "≥ 0.9× direct",
	"hs12":     "≥ 0.9× direct",
	"hslarge":  "≥ 0.9× direct",
	"pp1-p99":  "≤ 1.0× best peer",
	"pp16-p99": "≤ 1.0× best peer",
	"idle":     "< haproxy",
}

// writeRatios writes moat against the best relay peer and against direct.
func writeRatios(w io.Writer, results []*peerResult) {
	var moat, direct *peerResult
	for _, r := range results {
		switch r.name {
		case "moat":
			moat = r
		case "direct":
			direct = r
		}
	}
	fmt.Fprintln(w, "| metric | moat | best peer | moat / best peer | direct | moat / direct | target |")
	fmt.Fprintln(w, "|---|---:|---|---:|---:|---:|---|")
	for _, c := range mainColumns {
		moatCell, ratioPeer, directCell, ratioDirect := "pending", "pending", "–", "–"
		m, haveMoat := 0.0, false
		if moat != nil && moat.missing == "" {
			m, haveMoat = median(moat.samples[c.key])
			moatCell = c.cell(moat)
		}
		peerCell := "–"
		if name, v, ok := best(c, results, relayPeers); ok {
			peerCell = fmt.Sprintf("%s "+c.format, name, v*c.scale)
			if haveMoat {
				ratioPeer = fmt.Sprintf("%.2f", m/v)
			}
		}
		if direct != nil && direct.missing == "" {
			directCell = c.cell(direct)
			if d, ok := median(direct.samples[c.key]); ok && haveMoat {
				ratioDirect = fmt.Sprintf("%.2f", m/d)
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", c.title, moatCell, peerCell, ratioPeer, directCell, ratioDirect, targets[c.key])
	}
}

// writeNotes lists missing peers and anything that went wrong in a run.
func writeNotes(w io.Writer, results []*peerResult) {
	for _, r := range results {
		if r.missing != "" {
			fmt.Fprintf(w, "- %s: not measured: %s\n", r.name, r.missing)
		}
		for _, n := range slices.Compact(slices.Clone(r.notes)) {
			fmt.Fprintf(w, "- %s: %s\n", r.name, strings.TrimSpace(n))
		}
		if len(r.disturbed) > 0 {
			m, _ := median(r.disturbed)
			fmt.Fprintf(w, "- %s: %d of %d measurements were kept although other processes used more than %.0f%% of the CPUs (median %.0f%%, worst %.0f%%)\n",
				r.name, len(r.disturbed), r.measured, 100*maxForeign, 100*m, 100*slices.Max(r.disturbed))
		}
	}
}

// derive adds the figures computed from other peers' medians: the p50
// latency each relay adds over direct's, at one connection.
func derive(results []*peerResult) {
	var direct *peerResult
	for _, r := range results {
		if r.name == "direct" && r.missing == "" {
			direct = r
		}
	}
	if direct == nil {
		return
	}
	d, ok := median(direct.samples["pp1-p50"])
	if !ok {
		return
	}
	for _, r := range results {
		if m, ok := median(r.samples["pp1-p50"]); ok && r != direct && r.missing == "" {
			r.samples["pp1-added"] = []float64{m - d}
		}
	}
}

func find(results []*peerResult, name string) *peerResult {
	for _, r := range results {
		if r.name == name && r.missing == "" {
			return r
		}
	}
	return nil
}

// costTargets are issue 15's goals: moat's cost as a ratio to the best
// relay peer's (lower is better).
var costTargets = map[string]float64{"up-cpu": 0.8, "down-cpu": 0.8, "hs13-cpu": 0.85, "pp1-added": 0.8}

// writeCostRatios writes moat's cost figures against the best relay peer's.
func writeCostRatios(w io.Writer, results []*peerResult) {
	moat := find(results, "moat")
	if moat == nil {
		fmt.Fprintln(w, "moat was not measured.")
		return
	}
	fmt.Fprintln(w, "| figure | moat | best peer | moat / best peer | target | met |")
	fmt.Fprintln(w, "|---|---:|---|---:|---|---|")
	row := func(c column, name string, ref float64, target float64) {
		m, ok := median(moat.samples[c.key])
		if !ok {
			return
		}
		ratio := m / ref
		met := "yes"
		if ratio > target {
			met = "**no**"
		}
		fmt.Fprintf(w, "| %s | "+c.format+" | %s "+c.format+" | %.2f | ≤ %.2f× | %s |\n", c.title, m*c.scale, name, ref*c.scale, ratio, target, met)
	}
	for _, c := range costColumns {
		if c.key == "idle" {
			if h := find(results, "haproxy"); h != nil {
				if v, ok := median(h.samples["idle"]); ok {
					row(c, "haproxy", v, 0.6)
				}
			}
			continue
		}
		if name, v, ok := best(c, results, relayPeers); ok {
			row(c, name, v, costTargets[c.key])
		}
	}
	up, okU := median(moat.samples["up-cpu"])
	down, okD := median(moat.samples["down-cpu"])
	if okU && okD {
		met := "yes"
		if up > 1.1*down {
			met = "**no**"
		}
		fmt.Fprintf(w, "| upload against download, moat | %.2f | moat down %.2f | %.2f | ≤ 1.10× | %s |\n", up, down, up/down, met)
	}
}

// writeFloor writes, for each direction, the floor of a relay's CPU per
// byte on this machine: direct's (one TLS socket, the crypto, no relay)
// plus one plaintext TCP leg's (tcp-loopback), both from the same run;
// and how far each relay is above it.
func writeFloor(w io.Writer, results []*peerResult) {
	direct, leg := find(results, "direct"), find(results, "tcp-loopback")
	if direct == nil || leg == nil {
		fmt.Fprintln(w, "No floor: direct and tcp-loopback were not both measured.")
		return
	}
	fmt.Fprintln(w, "| direction | direct | + plain TCP leg | = floor | proxy | proxy CPU s/GB | above floor | proxy / floor |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---|---:|---:|---:|")
	for _, dir := range []string{"up", "down"} {
		d, ok1 := median(direct.samples[dir+"-cpu"])
		l, ok2 := median(leg.samples[dir+"-cpu"])
		if !ok1 || !ok2 {
			continue
		}
		floor := d + l
		for _, r := range results {
			if r.name != "moat" && !slices.Contains(relayPeers, r.name) || r.missing != "" {
				continue
			}
			if v, ok := median(r.samples[dir+"-cpu"]); ok {
				fmt.Fprintf(w, "| %s | %.2f | %.2f | %.2f | %s | %.2f | %+.2f | %.2f |\n", dir, d, l, floor, r.name, v, v-floor, v/floor)
			}
		}
	}
}

// writeReport is the whole markdown output of a run.
func writeReport(w io.Writer, header string, results []*peerResult) {
	derive(results)
	fmt.Fprintln(w, header)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "What each proxy's own process spent per unit of work (utime+stime of its process group; in brackets, how busy its core was meanwhile):")
	fmt.Fprintln(w)
	writeTable(w, costColumns, results)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "moat against the best relay peer (ghostunnel, iocopy, hitch, haproxy, stunnel):")
	fmt.Fprintln(w)
	writeCostRatios(w, results)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "CPU per byte against the floor (direct's CPU + one plain TCP leg's, same run):")
	fmt.Fprintln(w)
	writeFloor(w, results)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Throughput and latency as the load client saw them:")
	fmt.Fprintln(w)
	writeTable(w, mainColumns, results)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "The other handshakes' cost (same runs):")
	fmt.Fprintln(w)
	writeTable(w, cpuColumns, results)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Throughput and latency: moat against the best relay peer and against direct (issue 2's targets):")
	fmt.Fprintln(w)
	writeRatios(w, results)
	fmt.Fprintln(w)
	writeNotes(w, results)
}
