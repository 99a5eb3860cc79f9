package main

import (
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// roleEnv marks a re-executed test binary as one of the harness's roles, so
// the test needs no separately built bench binary and no apt packages.
const roleEnv = "MOAT_BENCH_ROLE"

func TestMain(m *testing.M) {
	if os.Getenv(roleEnv) == "1" {
		if err := dispatch(os.Args[1:]); err != nil {
			os.Stderr.WriteString("bench role: " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// tinyConfig is a workload small enough for `go test ./...` on 2 busy cores.
func tinyConfig(t *testing.T) runConfig {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(roleEnv, "1")
	// The proxy's CPU time comes from /proc's clock ticks (10 ms, sampled),
	// so the bulk runs move enough bytes for the relay to be seen on many
	// ticks: at 2 MiB it spent about four, and now and then none was counted;
	// the handshake runs last long enough for the same reason.
	return runConfig{
		reps: 1, bulkBytes: 16 << 20, bulkConns: 2, hsDuration: 600 * time.Millisecond, hsWorkers: 2,
		ppDuration: 150 * time.Millisecond, idleConns: 40, verify: true, peers: []string{"iocopy"},
		exe: exe, log: io.Discard, attempts: 1, // no quiet-machine waits: this is a test, not a figure
	}
}

// TestQuickBenchAgainstIOCopyRelay runs the harness machinery (certificates,
// upstream and relay processes, load processes, measurement, report) on a
// tiny workload against the io.Copy relay. Bulk bytes must arrive intact,
// checked by sha256 at both ends, and every metric must be positive.
func TestQuickBenchAgainstIOCopyRelay(t *testing.T) {
	cfg := tinyConfig(t)
	t.Cleanup(stopAll)

	tmp := t.TempDir()
	normal, _, err := writeCerts(tmp)
	if err != nil {
		t.Fatal(err)
	}
	e := &runEnv{exe: cfg.exe, tmp: tmp, idle: cfg.idleConns}
	in, err := startInstance(e, &peer{name: "iocopy", argv: iocopyArgv}, normal)
	if err != nil {
		t.Fatal(err)
	}
	defer in.stop()
	const n = 1<<20 + 12345 // not a multiple of any buffer size
	want := patternSHA(n)
	for _, dir := range []string{"up", "down"} {
		r, err := runLoad(e, in.addr, "-test", dir, "-bytes", strconv.Itoa(n), "-conns", "1", "-verify")
		if err != nil {
			t.Fatalf("%s: %v", dir, err)
		}
		if !r.Intact || !r.SHAChecked || r.SHA != want || r.Bytes != n {
			t.Fatalf("%s: intact=%v sha_checked=%v sha=%s bytes=%d, want sha %s bytes %d (%s)",
				dir, r.Intact, r.SHAChecked, r.SHA, r.Bytes, want, n, r.FirstError)
		}
	}
	in.stop()

	results, _, _, err := runAll(cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	r := results[0]
	if r.missing != "" || len(r.notes) > 0 {
		t.Fatalf("iocopy: missing=%q notes=%q", r.missing, r.notes)
	}
	for _, c := range append(append([]column{}, mainColumns...), costColumns[0], costColumns[1], costColumns[2], costColumns[4]) {
		if m, ok := median(r.samples[c.key]); !ok || !(m > 0) {
			t.Errorf("%s (%s) = %v, %v; want a positive median", c.title, c.key, m, ok)
		}
	}
	var sb strings.Builder
	writeReport(&sb, "test", results)
	t.Logf("\n%s", sb.String())
}
