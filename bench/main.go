// Command bench measures moat side by side with other TLS terminators in
// front of the same upstream: bulk MB/s each way, full handshakes per second,
// 1 KiB ping-pong latency and RSS per idle connection. See README.md.
//
//	go run ./bench run [-quick] [-out bench/README-table.md]
//	go run ./bench soak [-duration 60s] [-moat BIN] [-json out.json]
//
// soak is the other mode: moat alone, in a memory cgroup, under seven kinds
// of hostile load at once while a legitimate client keeps connecting.
//
// The same binary plays every other role as its own process (the upstream,
// the io.Copy relay, the direct TLS server and the load client), so that each
// has its own file descriptors, CPU pinning and RSS.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

func main() {
	if err := dispatch(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

const usage = `usage: bench run [flags]            run the comparison (bench run -h for flags)
       bench upstream -listen A      plaintext echo/sink/source upstream
       bench direct -listen A -cert C -key K
       bench iocopy-relay -listen A -target U -cert C -key K
       bench load -addr A -test up|down|handshake|pingpong|idle ...
       bench soak [flags]            moat under hostile load in a memory cgroup (bench soak -h)
       bench tunnels [flags]         moat run with 50 services next to one: RSS, reload CPU (bench tunnels -h)`

// dispatch runs one role.
func dispatch(args []string) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "run":
		return runMain(args[1:])
	case "upstream":
		return upstreamMain(args[1:], false)
	case "direct":
		return upstreamMain(args[1:], true)
	case "iocopy-relay":
		return iocopyMain(args[1:])
	case "load":
		return loadMain(args[1:])
	case "soak":
		return soakMain(args[1:])
	case "tunnels":
		return tunnelsMain(args[1:])
	}
	return fmt.Errorf("unknown role %q\n%s", args[0], usage)
}

// parseRunFlags turns `bench run` flags into a runConfig and an output path.
func parseRunFlags(args []string) (runConfig, string, error) {
	cfg := runConfig{log: os.Stderr, quietWait: 10 * time.Second, attempts: 3, patience: new(time.Duration)}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "small sizes, 1 rep, 1,000 idle conns: under a minute")
	fs.IntVar(&cfg.reps, "reps", 3, "repetitions; the table shows medians")
	mb := fs.Int64("bulk-mb", 1024, "MiB moved each way per repetition")
	fs.IntVar(&cfg.bulkConns, "bulk-conns", 4, "connections sharing the bulk transfer")
	fs.DurationVar(&cfg.hsDuration, "hs-duration", 1500*time.Millisecond, "duration of each handshake test")
	fs.IntVar(&cfg.hsWorkers, "hs-workers", 8, "concurrent connect+handshake loops")
	fs.DurationVar(&cfg.ppDuration, "pp-duration", 2*time.Second, "duration of each ping-pong test")
	fs.IntVar(&cfg.idleConns, "idle", 9000, "idle connections held for the memory test (fd hard limit 20,000: 2 per proxied conn)")
	fs.BoolVar(&cfg.verify, "verify", false, "also compare sha256 of every bulk stream (costs load-client CPU)")
	peers := fs.String("peers", "moat,ghostunnel,iocopy,hitch,haproxy,stunnel,direct,tcp-loopback", "peers to run, in table order")
	fs.StringVar(&cfg.moatBin, "moat", "", "prebuilt moat binary (default: go build the repository root)")
	fs.StringVar(&cfg.ghostBin, "ghostunnel", "", "ghostunnel binary to include as a peer (scripts/build-ghostunnel.sh builds one)")
	fs.DurationVar(cfg.patience, "patience", 4*time.Minute, "total time the run may spend waiting for other processes to quiet down and repeating measurements they disturbed")
	out := fs.String("out", "", "also write the markdown report to this file")
	if err := fs.Parse(args); err != nil {
		return cfg, "", err
	}
	if *quick {
		cfg.reps, *mb, cfg.idleConns = 1, 64, 1000
		cfg.hsDuration, cfg.ppDuration = 300*time.Millisecond, 300*time.Millisecond
		*cfg.patience = 0 // a smoke run: disturbed measurements are noted, not repeated
	}
	cfg.bulkBytes = *mb << 20
	cfg.peers = strings.Split(*peers, ",")
	exe, err := os.Executable()
	cfg.exe = exe
	return cfg, *out, err
}

func runMain(args []string) error {
	cfg, out, err := parseRunFlags(args)
	if err != nil {
		return err
	}
	raiseNoFile()
	stopOnSignal()
	if tasksetBin == "" {
		fmt.Fprintln(os.Stderr, "bench: taskset not found, roles are NOT pinned to CPUs")
	}
	moatMissing := ""
	tmp, err := os.MkdirTemp("", "moat-bench-bin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	moatFrom := cfg.moatBin
	if cfg.moatBin == "" {
		cfg.moatBin, moatMissing = buildMoat(tmp)
		moatFrom = moatRevision()
	}
	if moatMissing == "" {
		moatMissing = checkMoatServer(cfg.moatBin)
	}
	if moatMissing != "" {
		fmt.Fprintf(os.Stderr, "bench: skipping moat: %s\n", moatMissing)
	}
	start := time.Now()
	results, normal, large, err := runAll(cfg, moatMissing)
	if err != nil {
		return err
	}
	var report bytes.Buffer
	writeReport(&report, runHeader(cfg, args, normal, large, time.Since(start))+"\nmoat: "+moatFrom+".", results)
	os.Stdout.Write(report.Bytes())
	if out != "" {
		return os.WriteFile(out, report.Bytes(), 0o644)
	}
	return nil
}

// runHeader says how the table was made, so a pasted table carries its setup.
func runHeader(cfg runConfig, args []string, normal, large certFiles, took time.Duration) string {
	return fmt.Sprintf("`go run ./bench run %s` — %s, %d CPUs, %s, medians of %d, took %s.\n"+
		"Bulk %d MiB each way over %d conns; handshakes %d loops × %s; ping-pong %s; %d idle conns; "+
		"chain %d bytes (large %d bytes).",
		strings.Join(args, " "), time.Now().Format("2006-01-02"), runtime.NumCPU(), runtime.Version(), cfg.reps,
		took.Round(time.Second), cfg.bulkBytes>>20, cfg.bulkConns, cfg.hsWorkers, cfg.hsDuration,
		cfg.ppDuration, cfg.idleConns, normal.Bytes, large.Bytes)
}

// buildMoat builds the repository root into dir, or says why it cannot.
func buildMoat(dir string) (bin, missing string) {
	root, err := repoRoot()
	if err != nil {
		return "", err.Error()
	}
	bin = filepath.Join(dir, "moat")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = root
	cmd.Env = os.Environ()
	if os.Getenv("GOTOOLCHAIN") == "" {
		cmd.Env = append(cmd.Env, "GOTOOLCHAIN=auto") // go.mod asks for a newer patch release
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "go build failed: " + firstLine(string(out))
	}
	return bin, ""
}

// moatRevision names the checkout moat was built from: the commit, and
// "+ uncommitted changes" when the working tree differs from it, since other
// engineers edit the same checkout while a run is going.
func moatRevision() string {
	root, err := repoRoot()
	if err != nil {
		return "unknown revision"
	}
	rev, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown revision"
	}
	desc := "built from " + strings.TrimSpace(string(rev))
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		desc += " + uncommitted changes"
	}
	return desc
}

// checkMoatServer reports why `moat server` is not usable yet, or "".
func checkMoatServer(bin string) string {
	out, err := exec.Command(bin, "server", "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--listen") {
		return fmt.Sprintf("`moat server --help` failed (%v): %s", err, firstLine(string(out)))
	}
	return ""
}

// repoRoot walks up from the working directory to moat's go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/moat-proxy/moat\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("moat's go.mod not found above the working directory")
		}
		dir = parent
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
