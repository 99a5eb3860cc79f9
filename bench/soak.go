package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// soakConfig is one `bench soak`: moat under seven kinds of hostile load at
// once, in a memory cgroup, while a legitimate client keeps connecting.
type soakConfig struct {
	moatBin      string
	duration     time.Duration
	attacks      map[string]bool
	silent       int
	partial      int
	capFill      int
	statusSlow   int
	statusHuge   int
	bigCert      int
	badSNI       int
	slowReader   int
	legitEvery   time.Duration
	legitTimeout time.Duration
	memLimit     int64
	cgroupName   string // "" = run without a cgroup
	shutdown     time.Duration
	moatArgs     []string
	jsonOut      string
	label        string
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func parseSoakFlags(args []string) (soakConfig, error) {
	var cfg soakConfig
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.StringVar(&cfg.moatBin, "moat", "", "moat binary to test (default: go build the repository root)")
	fs.DurationVar(&cfg.duration, "duration", time.Minute, "how long the attacks run")
	attacks := fs.String("attacks", strings.Join(attackNames, ","), "attacks to run, any of: "+strings.Join(attackNames, ","))
	fs.IntVar(&cfg.silent, "silent", 4096, "silent: TCP connections to the TLS port that send nothing")
	fs.IntVar(&cfg.partial, "partial", 1024, "partial: connections that send 100 bytes of a ClientHello and stall")
	fs.IntVar(&cfg.capFill, "capfill", 2048, "capfill: silent and partial connections from one source address")
	fs.IntVar(&cfg.statusSlow, "status-slow", 300, "status: connections sending an endless header, a byte every 200 ms")
	fs.IntVar(&cfg.statusHuge, "status-huge", 16, "status: connections sending 1 MiB of headers, one after another")
	fs.IntVar(&cfg.bigCert, "bigcert", 256, "bigcert: TLS 1.3 handshakes stalled inside a ~250 KiB client Certificate")
	fs.IntVar(&cfg.badSNI, "badsni", 16, "badsni: loops sending ClientHellos with a 60,000-byte or NUL-bearing server name")
	fs.IntVar(&cfg.slowReader, "slowreader", 64, "slowreader: mTLS connections downloading a firehose, reading a byte every 5 s")
	fs.DurationVar(&cfg.legitEvery, "legit-every", 20*time.Millisecond, "pause between the legitimate client's attempts")
	fs.DurationVar(&cfg.legitTimeout, "legit-timeout", 5*time.Second, "limit on each legitimate attempt")
	limitMiB := fs.Int64("mem-limit-mib", 128, "memory cgroup limit for moat")
	fs.StringVar(&cfg.cgroupName, "cgroup-name", "moat-soak-"+strconv.Itoa(os.Getpid()), "name of the memory cgroup to create")
	noCgroup := fs.Bool("no-cgroup", false, "run moat without a memory cgroup")
	fs.DurationVar(&cfg.shutdown, "shutdown-timeout", 5*time.Second, "moat's --shutdown-timeout; the run ends with a SIGTERM")
	fs.Var((*stringList)(&cfg.moatArgs), "moat-arg", "extra argument for `moat server` (repeatable), e.g. -moat-arg=--max-concurrent-handshakes=1024")
	fs.StringVar(&cfg.jsonOut, "json", "", "also write the report as JSON to this file")
	fs.StringVar(&cfg.label, "label", "", "what the -moat binary is, for the report (e.g. \"before, built from 094dc3e\")")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	cfg.memLimit = *limitMiB << 20
	if *noCgroup {
		cfg.cgroupName = ""
	}
	cfg.attacks = map[string]bool{}
	for _, a := range strings.Split(*attacks, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		if !containsString(attackNames, a) {
			return cfg, fmt.Errorf("unknown attack %q; known: %s", a, strings.Join(attackNames, ","))
		}
		cfg.attacks[a] = true
	}
	return cfg, nil
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// soakEnv is what the attacks and the legitimate client share.
type soakEnv struct {
	tlsAddr, statusAddr string
	dialSem             chan struct{}
	hello               []byte // a real ClientHello, for the partial attacks
	longSNI, nulSNI     []byte
	bigCert             tls.Certificate
	legitTLS            *tls.Config
}

func soakMain(args []string) error {
	cfg, err := parseSoakFlags(args)
	if err != nil {
		return err
	}
	raiseNoFile()
	warnFDBudget(cfg)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	defer stopAll()
	tmp, err := os.MkdirTemp("", "moat-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	rep := &soakReport{Command: "bench soak " + strings.Join(args, " "), Date: time.Now().Format("2006-01-02 15:04"),
		CPUs: machineCPUs(), MoatCPUs: "all", ToolCPUs: "all"}
	if tasksetBin != "" {
		rep.MoatCPUs = "CPU " + strconv.Itoa(proxyCPU)
	}
	if n := runtime.NumCPU(); n < rep.CPUs {
		rep.ToolCPUs = strconv.Itoa(n) + " of them"
	}
	rig, err := setUpSoak(&cfg, tmp, rep)
	if err != nil {
		return err
	}
	defer rig.tearDown(rep)
	rig.run(ctx, cfg, rep)
	rig.tearDown(rep)
	writeSoakReport(os.Stdout, rep)
	if cfg.jsonOut != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		return os.WriteFile(cfg.jsonOut, append(b, '\n'), 0o644)
	}
	return nil
}

// machineCPUs counts the machine's CPUs; runtime.NumCPU counts only those
// this process may run on, which the wrapper script narrows.
func machineCPUs() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	n := strings.Count(string(b), "\nprocessor\t")
	if strings.HasPrefix(string(b), "processor\t") {
		n++
	}
	if err != nil || n == 0 {
		return runtime.NumCPU()
	}
	return n
}

// warnFDBudget says when the attacks want more descriptors than the tool
// may open, since the shortfall would show up as dial failures.
func warnFDBudget(cfg soakConfig) {
	want := cfg.silent + cfg.partial + cfg.capFill + cfg.statusSlow + cfg.statusHuge + cfg.bigCert + cfg.badSNI + cfg.slowReader + 100
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && uint64(want) > lim.Cur {
		fmt.Fprintf(os.Stderr, "soak: the attacks want ~%d descriptors, RLIMIT_NOFILE is %d: expect dial failures from the tool itself\n", want, lim.Cur)
	}
}

// moatCommand is the command line of moat under test: mTLS with --allow-all,
// a status port, and the caller's extra flags last so that they win.
func moatCommand(cfg soakConfig, pki *soakPKI, listen, status, target string) []string {
	argv := []string{cfg.moatBin, "server", "--listen", listen, "--target", target,
		"--cert", pki.files.Cert, "--key", pki.files.Key, "--cacert", pki.files.CA, "--allow-all",
		"--status", status, "--log-level", "warn", "--shutdown-timeout", cfg.shutdown.String()}
	return append(argv, cfg.moatArgs...)
}

// inCgroup wraps argv so that the process joins cg before it execs moat:
// moat's first allocation is already charged and limited.
func inCgroup(cg *memCgroup, argv []string) []string {
	return append([]string{"/bin/sh", "-c", `echo $$ > "$0" && exec "$@"`, cg.procsFile()}, argv...)
}

// exitDescription turns moat's wait status into words and says whether the
// kernel's OOM killer ended it (a SIGKILL nobody else sent, or the
// cgroup's own oom_kill count).
func exitDescription(c *child, oomKills int64, weKilled bool) (string, bool) {
	ps := c.cmd.ProcessState
	if ps == nil {
		return "still running", false
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok {
		return ps.String(), false
	}
	switch {
	case ws.Signaled():
		killed := ws.Signal() == syscall.SIGKILL && (oomKills > 0 || !weKilled)
		return fmt.Sprintf("killed by signal %d (%v)", int(ws.Signal()), ws.Signal()), killed
	case ws.Exited():
		return "exit status " + strconv.Itoa(ws.ExitStatus()), false
	}
	return ps.String(), false
}
