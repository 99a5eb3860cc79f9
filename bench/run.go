package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// runConfig is the workload of one `bench run`.
type runConfig struct {
	reps       int
	bulkBytes  int64
	bulkConns  int
	hsDuration time.Duration
	hsWorkers  int
	ppDuration time.Duration
	idleConns  int
	verify     bool
	peers      []string      // names to run, in table order
	moatBin    string        // prebuilt moat; "" builds it from the repo root
	ghostBin   string        // ghostunnel binary; "" leaves it out
	exe        string        // the binary that serves the child roles
	quietWait  time.Duration // longest wait for a quiet machine before a measurement
	attempts   int           // tries per measurement while other processes disturb it
	// patience is the time the whole run may spend waiting for a quiet
	// machine and repeating disturbed measurements; it bounds the run's
	// length however busy the neighbours are.
	patience *time.Duration
	log      io.Writer
}

// peerResult collects one peer's samples across repetitions.
type peerResult struct {
	name    string
	missing string
	samples map[string][]float64
	notes   []string
	// measured counts kept measurements; disturbed holds, for each one kept
	// although other processes were busy, their share of the CPUs.
	measured  int
	disturbed []float64
}

func (r *peerResult) add(metric string, v float64) {
	r.samples[metric] = append(r.samples[metric], v)
}

func (r *peerResult) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// instance is one running peer: the proxy and, unless the peer is direct, the
// plaintext upstream it relays to. Each instance gets its own upstream and
// ports, so TIME_WAIT entries of one never limit the next.
type instance struct {
	proxy, upstream *child
	addr            string
}

func (in *instance) stop() {
	in.proxy.stop()
	if in.upstream != nil {
		in.upstream.stop()
	}
}

// startInstance starts p with cert: upstream on the load CPU, proxy on its own.
func startInstance(e *runEnv, p *peer, cert certFiles) (*instance, error) {
	dir, err := os.MkdirTemp(e.tmp, p.name+"-")
	if err != nil {
		return nil, err
	}
	in := &instance{}
	target := ""
	if !p.direct {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		target = "127.0.0.1:" + strconv.Itoa(port)
		if in.upstream, err = startChild("upstream", loadCPU, []string{e.exe, "upstream", "-listen", target}, nil); err != nil {
			return nil, err
		}
		if err := waitListening(in.upstream, target, 5*time.Second); err != nil {
			in.upstream.stop()
			return nil, err
		}
	}
	port, err := freePort()
	if err == nil {
		in.addr = "127.0.0.1:" + strconv.Itoa(port)
		var argv []string
		if argv, err = p.argv(e, dir, in.addr, target, cert); err == nil {
			in.proxy, err = startChild(p.name, proxyCPU, argv, nil)
		}
	}
	if err == nil {
		err = waitListening(in.proxy, in.addr, 10*time.Second)
	}
	if err != nil {
		if in.proxy != nil {
			in.proxy.stop()
		}
		if in.upstream != nil {
			in.upstream.stop()
		}
		return nil, err
	}
	return in, nil
}

// runLoad runs one `bench load` process on the load CPU and returns its
// result, the last line it prints.
func runLoad(e *runEnv, addr string, args ...string) (loadResult, error) {
	var stdout bytes.Buffer
	argv := append([]string{e.exe, "load", "-addr", addr}, args...)
	c, err := startChild("load", loadCPU, argv, func(cmd *exec.Cmd) { cmd.Stdout = &lockedWriter{w: &stdout} })
	if err != nil {
		return loadResult{}, err
	}
	defer c.stop()
	select {
	case <-c.done:
	case <-time.After(5 * time.Minute):
		return loadResult{}, fmt.Errorf("load %v timed out", args)
	}
	if c.err != nil {
		return loadResult{}, fmt.Errorf("load %v: %v: %s", args, c.err, c.tail())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var r loadResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		return r, fmt.Errorf("load %v printed %q: %w", args, stdout.String(), err)
	}
	return r, nil
}

// idleRSS measures the proxy's RSS per idle connection: RSS of the proxy's
// process group after one warm-up connection, then with n connections open
// (each did a handshake and a 1-byte echo), settled for a second.
func idleRSS(e *runEnv, in *instance, n int) (perConn float64, opened int, err error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return 0, 0, err
	}
	defer inW.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		return 0, 0, err
	}
	defer outR.Close()
	argv := []string{e.exe, "load", "-addr", in.addr, "-test", "idle", "-conns", strconv.Itoa(n)}
	c, err := startChild("load-idle", loadCPU, argv, func(cmd *exec.Cmd) { cmd.Stdin, cmd.Stdout = inR, outW })
	inR.Close()
	outW.Close()
	if err != nil {
		return 0, 0, err
	}
	defer c.stop()
	lines := bufio.NewReader(outR)
	_ = outR.SetReadDeadline(time.Now().Add(30 * time.Second))
	if line, err := lines.ReadString('\n'); err != nil || line != "warm\n" {
		return 0, 0, fmt.Errorf("idle load did not warm up (%q, %v): %s", line, err, c.tail())
	}
	time.Sleep(300 * time.Millisecond)
	before, _, _ := in.proxy.groupStats()
	if _, err := inW.Write([]byte("go\n")); err != nil {
		return 0, 0, err
	}
	_ = outR.SetReadDeadline(time.Now().Add(5 * time.Minute))
	line, err := lines.ReadString('\n')
	var r loadResult
	if err == nil {
		err = json.Unmarshal([]byte(line), &r)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("idle load: %v: %s", err, c.tail())
	}
	if r.Count == 0 {
		return 0, 0, fmt.Errorf("no idle connection opened: %s", r.FirstError)
	}
	time.Sleep(time.Second)
	after, _, _ := in.proxy.groupStats()
	if r.Errors > 0 {
		err = fmt.Errorf("only %d of %d idle connections opened (%s)", r.Count, n, r.FirstError)
	}
	return float64(after-before) / float64(r.Count), r.Count, err
}

// measureNormal runs every measurement that uses the normal chain against one
// fresh instance: idle memory first (on a fresh process), then bulk, ping-pong
// and handshakes.
func measureNormal(e *runEnv, cfg runConfig, p *peer, in *instance, res *peerResult) {
	if p.plain {
		for _, dir := range []string{"up", "down"} {
			guarded(cfg, in, res, dir, func() (map[string]float64, error) { return measureBulk(e, cfg, in, dir, true) })
		}
		return
	}
	cfg.waitQuiet()
	perConn, opened, err := idleRSS(e, in, cfg.idleConns)
	if opened > 0 {
		res.add("idle", perConn)
	}
	if err != nil {
		res.note("idle: %v", err)
	}
	for _, dir := range []string{"up", "down"} {
		guarded(cfg, in, res, dir, func() (map[string]float64, error) { return measureBulk(e, cfg, in, dir, false) })
	}
	for _, conns := range []int{1, 16} {
		guarded(cfg, in, res, fmt.Sprintf("ping-pong %d", conns), func() (map[string]float64, error) {
			return measurePingPong(e, cfg, in, conns)
		})
	}
	guarded(cfg, in, res, "hs13", func() (map[string]float64, error) { return measureHandshakes(e, cfg, in, "hs13", "1.3") })
	guarded(cfg, in, res, "hs12", func() (map[string]float64, error) { return measureHandshakes(e, cfg, in, "hs12", "1.2") })
}

// guarded runs one measurement and keeps its samples if the machine was
// otherwise quiet while it ran. Other engineers share this 2-core machine;
// a build of theirs during a run would be measured as the proxy being slow.
// A disturbed measurement is retried up to twice; the last one is kept.
func guarded(cfg runConfig, in *instance, res *peerResult, name string, measure func() (map[string]float64, error)) {
	for attempt := 1; ; attempt++ {
		cfg.waitQuiet()
		start := time.Now()
		m0 := markCPU(in)
		samples, err := measure()
		foreign, share := foreignCPU(m0, markCPU(in))
		if err != nil {
			res.note("%s: %v", name, err)
			return
		}
		if !disturbed(foreign, share) || attempt >= cfg.attempts || cfg.patienceLeft() <= 0 {
			for k, v := range samples {
				res.add(k, v)
			}
			res.measured++
			if disturbed(foreign, share) {
				res.disturbed = append(res.disturbed, share)
			}
			return
		}
		cfg.spend(time.Since(start))
		fmt.Fprintf(cfg.log, "bench:   %s %s: other processes used %.0f%% of the CPUs, repeating\n", res.name, name, 100*share)
	}
}

// waitQuiet waits for a quiet machine within the run's remaining patience.
func (cfg runConfig) waitQuiet() {
	start := time.Now()
	waitQuiet(min(cfg.quietWait, cfg.patienceLeft()))
	cfg.spend(time.Since(start))
}

func (cfg runConfig) patienceLeft() time.Duration {
	if cfg.patience == nil {
		return 0
	}
	return *cfg.patience
}

func (cfg runConfig) spend(d time.Duration) {
	if cfg.patience != nil {
		*cfg.patience -= d
	}
}

// measureBulk moves cfg.bulkBytes one way and records MB/s, the proxy's
// CPU seconds per GB (10^9 bytes) and how busy its core was meanwhile.
func measureBulk(e *runEnv, cfg runConfig, in *instance, dir string, plain bool) (map[string]float64, error) {
	_, cpu0, _ := in.proxy.groupStats()
	start := time.Now()
	r, err := runLoad(e, in.addr, "-test", dir, "-bytes", strconv.FormatInt(cfg.bulkBytes, 10),
		"-conns", strconv.Itoa(cfg.bulkConns), "-verify="+strconv.FormatBool(cfg.verify), "-plain="+strconv.FormatBool(plain))
	wall := time.Since(start)
	_, cpu1, _ := in.proxy.groupStats()
	if err == nil && (!r.Intact || cfg.verify && !r.SHAChecked) {
		err = fmt.Errorf("bytes not intact: %s", r.FirstError)
	}
	if err != nil {
		return nil, err
	}
	return map[string]float64{
		dir:           r.MBps,
		dir + "-cpu":  (cpu1 - cpu0).Seconds() / (float64(r.Bytes) / 1e9),
		dir + "-util": 100 * (cpu1 - cpu0).Seconds() / wall.Seconds(),
	}, nil
}

// measurePingPong records p50 and p99 of 1 KiB round trips over conns.
func measurePingPong(e *runEnv, cfg runConfig, in *instance, conns int) (map[string]float64, error) {
	_, cpu0, _ := in.proxy.groupStats()
	start := time.Now()
	r, err := runLoad(e, in.addr, "-test", "pingpong", "-conns", strconv.Itoa(conns), "-duration", cfg.ppDuration.String())
	wall := time.Since(start)
	_, cpu1, _ := in.proxy.groupStats()
	if err == nil && !r.Intact {
		err = fmt.Errorf("echo not intact: %s", r.FirstError)
	}
	if err != nil {
		return nil, err
	}
	return map[string]float64{
		fmt.Sprintf("pp%d-p50", conns):  r.P50us,
		fmt.Sprintf("pp%d-p99", conns):  r.P99us,
		fmt.Sprintf("pp%d-util", conns): 100 * (cpu1 - cpu0).Seconds() / wall.Seconds(),
	}, nil
}

// measureHandshakes records handshakes/s and the proxy's CPU per handshake,
// which tells whether the proxy or the load client was the bottleneck.
func measureHandshakes(e *runEnv, cfg runConfig, in *instance, metric, ver string) (map[string]float64, error) {
	_, cpu0, _ := in.proxy.groupStats()
	start := time.Now()
	r, err := runLoad(e, in.addr, "-test", "handshake", "-tls", ver,
		"-conns", strconv.Itoa(cfg.hsWorkers), "-duration", cfg.hsDuration.String())
	wall := time.Since(start)
	_, cpu1, _ := in.proxy.groupStats()
	if err == nil && r.Count == 0 {
		err = fmt.Errorf("no handshake completed: %s", r.FirstError)
	}
	if err == nil && r.Errors > 0 {
		err = fmt.Errorf("%d failed handshakes (%s)", r.Errors, r.FirstError)
	}
	if err != nil {
		return nil, err
	}
	return map[string]float64{
		metric:           r.PerSec,
		metric + "-cpu":  float64((cpu1 - cpu0).Microseconds()) / float64(r.Count),
		metric + "-util": 100 * (cpu1 - cpu0).Seconds() / wall.Seconds(),
	}, nil
}

// runAll runs every repetition of every available peer and returns their
// results in table order. Within a repetition the peers take turns, so a
// slow drift of the machine spreads over all of them rather than one.
func runAll(cfg runConfig, moatMissing string) ([]*peerResult, certFiles, certFiles, error) {
	var normal, large certFiles
	tmp, err := os.MkdirTemp("", "moat-bench-")
	if err != nil {
		return nil, normal, large, err
	}
	defer os.RemoveAll(tmp)
	defer stopAll()
	if normal, large, err = writeCerts(tmp); err != nil {
		return nil, normal, large, err
	}
	e := &runEnv{exe: cfg.exe, moatBin: cfg.moatBin, ghostBin: cfg.ghostBin, tmp: tmp, idle: cfg.idleConns}
	byName := map[string]*peer{}
	for _, p := range allPeers(e, moatMissing) {
		byName[p.name] = p
	}
	var results []*peerResult
	var peers []*peer
	for _, name := range cfg.peers {
		p, ok := byName[name]
		if !ok {
			return nil, normal, large, fmt.Errorf("unknown peer %q", name)
		}
		peers = append(peers, p)
		results = append(results, &peerResult{name: name, missing: p.missing, samples: map[string][]float64{}})
	}
	for rep := 1; rep <= cfg.reps; rep++ {
		for i, p := range peers {
			res := results[i]
			if res.missing != "" {
				continue
			}
			fmt.Fprintf(cfg.log, "bench: rep %d/%d %s\n", rep, cfg.reps, p.name)
			runRep(e, cfg, p, normal, large, res)
		}
	}
	return results, normal, large, nil
}

// runRep is one repetition of one peer: a fresh instance with the normal
// chain for everything, then a fresh one with the large chain for its
// handshakes. A peer that cannot start at all is reported missing.
func runRep(e *runEnv, cfg runConfig, p *peer, normal, large certFiles, res *peerResult) {
	in, err := startInstance(e, p, normal)
	if err != nil {
		if len(res.samples) == 0 {
			res.missing = "did not start: " + err.Error()
		} else {
			res.note("start: %v", err)
		}
		return
	}
	measureNormal(e, cfg, p, in, res)
	if in.proxy.exited() {
		res.note("exited during the run: %v: %s", in.proxy.err, in.proxy.tail())
	}
	in.stop()
	if p.plain {
		return
	}
	in, err = startInstance(e, p, large)
	if err != nil {
		res.note("start with the large chain: %v", err)
		return
	}
	defer in.stop()
	guarded(cfg, in, res, "hslarge", func() (map[string]float64, error) { return measureHandshakes(e, cfg, in, "hslarge", "1.3") })
}
