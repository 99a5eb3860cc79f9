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
}

// mainColumns are the headline figures; cpuColumns explain them.
var mainColumns = []column{
	{"up", "bulk up MB/s", true, "MB/s", "%.0f", 1},
	{"down", "bulk down MB/s", true, "MB/s", "%.0f", 1},
	{"hs13", "hs/s TLS1.3", true, "hs/s", "%.0f", 1},
	{"hs12", "hs/s TLS1.2", true, "hs/s", "%.0f", 1},
	{"hslarge", "hs/s TLS1.3 large chain", true, "hs/s", "%.0f", 1},
	{"pp1-p50", "1 KiB RTT p50 µs, 1 conn", false, "µs", "%.0f", 1},
	{"pp1-p99", "p99 µs, 1 conn", false, "µs", "%.0f", 1},
	{"pp16-p50", "p50 µs, 16 conns", false, "µs", "%.0f", 1},
	{"pp16-p99", "p99 µs, 16 conns", false, "µs", "%.0f", 1},
	{"idle", "idle RSS KB/conn", false, "KB", "%.1f", 1.0 / 1000},
}

var cpuColumns = []column{
	{"up-cpu", "proxy CPU s/GiB up", false, "s/GiB", "%.2f", 1},
	{"down-cpu", "proxy CPU s/GiB down", false, "s/GiB", "%.2f", 1},
	{"hs13-cpu", "proxy CPU µs/hs TLS1.3", false, "µs", "%.0f", 1},
	{"hs13-util", "proxy core busy % during TLS1.3 hs", true, "%", "%.0f", 1},
	{"hs12-cpu", "proxy CPU µs/hs TLS1.2", false, "µs", "%.0f", 1},
	{"hslarge-cpu", "proxy CPU µs/hs large", false, "µs", "%.0f", 1},
}

// relayPeers are the peers moat is compared with; direct is a ceiling, not
// a peer (it relays nothing).
var relayPeers = []string{"iocopy", "hitch", "haproxy", "stunnel"}

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
	return fmt.Sprintf(c.format, m*c.scale)
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

// writeReport is the whole markdown output of a run.
func writeReport(w io.Writer, header string, results []*peerResult) {
	fmt.Fprintln(w, header)
	fmt.Fprintln(w)
	writeTable(w, mainColumns, results)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Where the proxy's core went (same runs):")
	fmt.Fprintln(w)
	writeTable(w, cpuColumns, results)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "moat against the best relay peer (iocopy, hitch, haproxy, stunnel) and against direct:")
	fmt.Fprintln(w)
	writeRatios(w, results)
	fmt.Fprintln(w)
	writeNotes(w, results)
}
