package main

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// soakReport is everything one soak run found; the text report and the
// -json file are both made from it.
type soakReport struct {
	Command    string             `json:"command"`
	Moat       string             `json:"moat"`
	Date       string             `json:"date"`
	CPUs       int                `json:"cpus"`
	MoatCPUs   string             `json:"moat_cpus"` // "all", or the one taskset gave it
	ToolCPUs   string             `json:"tool_cpus"`
	Seconds    float64            `json:"seconds"` // how long the attacks ran
	Cgroup     *cgroupStats       `json:"cgroup,omitempty"`
	CgroupNote string             `json:"cgroup_note,omitempty"` // why moat ran without one
	Attacks    []attackReport     `json:"attacks"`
	Legit      legitReport        `json:"legitimate_client"`
	Process    processReport      `json:"moat_process"`
	Counters   map[string]float64 `json:"moat_counters,omitempty"`
	Samples    []soakSample       `json:"samples"`
	ToolMaxRSS int64              `json:"tool_max_rss_bytes"`
}

type attackReport struct {
	Name string `json:"name"`
	attackCounts
}

// legitReport is the legitimate client's view. Latencies are of the
// attempts that succeeded: connect, mTLS handshake, 1 KiB echo.
type legitReport struct {
	Attempts    int            `json:"attempts"`
	OK          int            `json:"ok"`
	SuccessRate float64        `json:"success_rate"`
	P50ms       float64        `json:"p50_ms"`
	P99ms       float64        `json:"p99_ms"`
	MaxMs       float64        `json:"max_ms"`
	Failures    map[string]int `json:"failures,omitempty"` // by stage and error class
	FirstError  string         `json:"first_error,omitempty"`
}

// processReport is what was seen of the moat process.
type processReport struct {
	RSSMax          int64   `json:"rss_max_bytes"`
	RSSFinal        int64   `json:"rss_final_bytes"` // last sample while it ran
	GoroutinesMax   int     `json:"goroutines_max"`
	GoroutinesFinal int     `json:"goroutines_final"`
	FDsMax          int     `json:"fds_max"`
	ScrapesOK       int     `json:"status_scrapes_ok"`
	ScrapesFailed   int     `json:"status_scrapes_failed"`
	DiedAt          float64 `json:"died_at_seconds,omitempty"` // moat exited during the attacks
	Exit            string  `json:"exit"`
	OOMKilled       bool    `json:"oom_killed"`
	ShutdownSeconds float64 `json:"shutdown_seconds,omitempty"` // SIGTERM to exit, slow readers held
	Tail            string  `json:"stderr_tail,omitempty"`
}

// soakSample is one second of the run.
type soakSample struct {
	T           float64 `json:"t"`
	RSS         int64   `json:"rss"`
	CgroupUsage int64   `json:"cgroup_usage,omitempty"`
	FDs         int     `json:"fds"`
	Goroutines  int     `json:"goroutines,omitempty"` // every fifth second, from /metrics
	LegitOK     int     `json:"legit_ok"`             // cumulative
	LegitFailed int     `json:"legit_failed"`         // cumulative
}

// percentile is the p-th percentile (0..100) of sorted, by nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// parseMetrics reads the Prometheus text exposition and returns every sample
// whose name starts with one of prefixes, keyed by name and labels as
// written ("moat_connections_refused_total{reason=\"max-handshakes\"}").
// Histogram buckets are left out; their _sum and _count stay.
func parseMetrics(r io.Reader, prefixes ...string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		key, val := line[:i], line[i+1:]
		if j := strings.LastIndexByte(key, '}'); j < 0 && strings.Contains(key, " ") {
			// "name value timestamp": the value is the middle field.
			key, val, _ = strings.Cut(line, " ")
			val, _, _ = strings.Cut(val, " ")
		}
		name, _, _ := strings.Cut(key, "{")
		if strings.HasSuffix(name, "_bucket") || !hasAnyPrefix(name, prefixes) {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			out[key] = v
		}
	}
	return out
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func mib(b int64) string {
	if b < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

// writeSoakReport prints the report as text: a table of attacks, then the
// legitimate client, moat's process and the cgroup.
func writeSoakReport(w io.Writer, r *soakReport) {
	fmt.Fprintf(w, "moat soak — %s, %d CPUs (moat on %s, this tool on %s), attacks ran %.0f s\n`%s`\nmoat: %s\n\n",
		r.Date, r.CPUs, r.MoatCPUs, r.ToolCPUs, r.Seconds, r.Command, r.Moat)
	fmt.Fprintf(w, "| attack | slots | opened | dial failed | closed <1s | closed ≥1s | max open | open at end | outcomes |\n")
	fmt.Fprintf(w, "|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, a := range r.Attacks {
		fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %d | %d | %d | %s |\n", a.Name, a.Slots, a.Opened, a.DialFailed,
			a.ClosedFast, a.ClosedLater, a.MaxOpen, a.OpenAtEnd, outcomeList(a.Outcomes))
	}
	l := r.Legit
	fmt.Fprintf(w, "\nlegitimate client (new mTLS connection + 1 KiB echo): %d/%d ok (%.1f%%), p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		l.OK, l.Attempts, 100*l.SuccessRate, l.P50ms, l.P99ms, l.MaxMs)
	if len(l.Failures) > 0 {
		fmt.Fprintf(w, "  failures: %s\n  first: %s\n", outcomeList(intMap(l.Failures)), l.FirstError)
	}
	p := r.Process
	fmt.Fprintf(w, "\nmoat RSS max %s, final %s; goroutines max %d, final %d; fds max %d; /metrics scrapes %d ok, %d failed\n",
		mib(p.RSSMax), mib(p.RSSFinal), p.GoroutinesMax, p.GoroutinesFinal, p.FDsMax, p.ScrapesOK, p.ScrapesFailed)
	if p.DiedAt > 0 {
		fmt.Fprintf(w, "moat DIED %.1f s into the attacks: %s\n", p.DiedAt, p.Exit)
	} else {
		fmt.Fprintf(w, "moat survived; SIGTERM with the slow readers still open: %s after %.1f s\n", p.Exit, p.ShutdownSeconds)
	}
	fmt.Fprintf(w, "OOM-killed: %s\n", yesNo(p.OOMKilled))
	if c := r.Cgroup; c != nil {
		fmt.Fprintf(w, "memory cgroup v%d %s: limit %s, max usage %s, failcnt %d (memsw %d), oom events %d, oom kills %d; "+
			"within %s of the limit in %d of %d one-second samples\n",
			c.Version, c.Path, mib(c.Limit), mib(c.MaxUsage), c.FailCnt, c.MemswFailCnt, c.OOM, c.OOMKill,
			mib(nearLimit), samplesNearLimit(r.Samples, c.Limit), len(r.Samples))
	} else {
		fmt.Fprintf(w, "NO MEMORY CGROUP: moat ran without a memory limit (%s)\n", r.CgroupNote)
	}
	fmt.Fprintf(w, "soak tool's own max RSS %s\n", mib(r.ToolMaxRSS))
	if len(r.Counters) > 0 {
		fmt.Fprintf(w, "\nmoat counters at the end (non-zero):\n")
		for _, k := range slices.Sorted(maps.Keys(r.Counters)) {
			if r.Counters[k] != 0 {
				fmt.Fprintf(w, "  %s %g\n", k, r.Counters[k])
			}
		}
	}
	if p.Tail != "" {
		fmt.Fprintf(w, "\nmoat's last output: %s\n", p.Tail)
	}
}

// nearLimit is how close to the cgroup limit a sample must be to count as
// at the limit: the kernel reclaims and fails charges within a few pages of
// it, and some kernels (6.18 here) leave failcnt at 0 even across an OOM
// kill, so the samples are the steadier witness.
const nearLimit = 4 << 20

func samplesNearLimit(samples []soakSample, limit int64) int {
	n := 0
	for _, s := range samples {
		if s.CgroupUsage >= limit-nearLimit {
			n++
		}
	}
	return n
}

// outcomeList prints counts largest first: "alert 120, closed 3".
func outcomeList(m map[string]int64) string {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		if c := cmp.Compare(m[b], m[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func intMap(m map[string]int) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = int64(v)
	}
	return out
}

func yesNo(b bool) string {
	if b {
		return "YES"
	}
	return "no"
}
