package main

import (
	"strconv"
	"strings"
	"testing"
)

func result(name string, samples map[string][]float64) *peerResult {
	return &peerResult{name: name, samples: samples}
}

// TestCostReportRatiosAndFloor: the headline report derives the latency a
// relay adds over direct, compares moat with the best relay peer (not with
// direct or the plain TCP leg), marks targets met or missed, and adds
// direct's and the TCP leg's CPU per byte into a floor.
func TestCostReportRatiosAndFloor(t *testing.T) {
	results := []*peerResult{
		result("moat", map[string][]float64{"up-cpu": {1.6, 1.7, 1.5}, "up-util": {50}, "down-cpu": {1.3}, "hs13-cpu": {600}, "pp1-p50": {150}, "idle": {9000}}),
		result("ghostunnel", map[string][]float64{"up-cpu": {2.0}, "down-cpu": {2.0}, "hs13-cpu": {800}, "pp1-p50": {200}, "idle": {50000}}),
		result("haproxy", map[string][]float64{"up-cpu": {2.5}, "down-cpu": {1.5}, "hs13-cpu": {650}, "pp1-p50": {220}, "idle": {20000}}),
		result("direct", map[string][]float64{"up-cpu": {1.0}, "down-cpu": {0.9}, "hs13-cpu": {500}, "pp1-p50": {100}, "idle": {30000}}),
		result("tcp-loopback", map[string][]float64{"up-cpu": {0.4}, "down-cpu": {0.5}}),
	}
	var sb strings.Builder
	writeReport(&sb, "test", results)
	out := sb.String()
	if got := results[0].samples["pp1-added"]; len(got) != 1 || got[0] != 50 {
		t.Fatalf("moat's added p50 = %v, want [50] (150 - direct's 100)", got)
	}
	for _, want := range []string{
		"| moat | 1.60 (50 %) | 1.30 |",                                     // median, with the core's utilisation
		"| CPU s/GB up | 1.60 | ghostunnel 2.00 | 0.80 | ≤ 0.80× | yes |",   // best peer, not direct
		"| CPU s/GB down | 1.30 | haproxy 1.50 | 0.87 | ≤ 0.80× | **no** |", // missed
		"| CPU µs per TLS 1.3 handshake | 600 | haproxy 650 | 0.92 | ≤ 0.85× | **no** |",
		"| added p50 µs, 1 KiB echo, 1 conn | 50 | ghostunnel 100 | 0.50 | ≤ 0.80× | yes |",
		"| bytes per idle conn | 9000 | haproxy 20000 | 0.45 | ≤ 0.60× | yes |",
		"| upload against download, moat | 1.60 | moat down 1.30 | 1.23 | ≤ 1.10× | **no** |",
		"| up | 1.00 | 0.40 | 1.40 | moat | 1.60 | +0.20 | 1.14 |",
		"| down | 0.90 | 0.50 | 1.40 | haproxy | 1.50 | +0.10 | 1.07 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q\n%s", want, out)
		}
	}
	for _, notRelay := range []string{"| 1.40 | direct |", "| 1.40 | tcp-loopback |", "| direct 1.00 |", "| tcp-loopback 0.40 |"} {
		if strings.Contains(out, notRelay) {
			t.Errorf("direct or the TCP leg was compared as a relay (%q):\n%s", notRelay, out)
		}
	}
}

// TestPlainLegMovesIntactBytes: the tcp-loopback target (the upstream role
// reached without TLS, bench load -plain) moves bulk bytes both ways
// intact, checked by sha256 at both ends.
func TestPlainLegMovesIntactBytes(t *testing.T) {
	cfg := tinyConfig(t)
	t.Cleanup(stopAll)
	e := &runEnv{exe: cfg.exe, tmp: t.TempDir()}
	in, err := startInstance(e, &peer{name: "tcp-loopback", direct: true, plain: true, argv: tcpLoopbackArgv}, certFiles{})
	if err != nil {
		t.Fatal(err)
	}
	defer in.stop()
	const n = 1<<20 + 4321
	want := patternSHA(n)
	for _, dir := range []string{"up", "down"} {
		r, err := runLoad(e, in.addr, "-test", dir, "-bytes", strconv.Itoa(n), "-conns", "1", "-verify", "-plain")
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if !r.Intact || !r.SHAChecked || r.SHA != want || r.Bytes != n {
			t.Fatalf("%s: intact=%v sha_checked=%v sha=%s bytes=%d, want sha %s bytes %d (%s)",
				dir, r.Intact, r.SHAChecked, r.SHA, r.Bytes, want, n, r.FirstError)
		}
	}
}
