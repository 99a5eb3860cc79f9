package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// soakRig is one soak's processes and cgroup: the upstream, moat (inside
// the cgroup when there is one), and what the attacks share.
type soakRig struct {
	env      *soakEnv
	cg       *memCgroup
	upstream *child
	moat     *child
	sentKill bool // the soak, not the kernel, sent moat a SIGKILL
	torn     bool
}

// setUpSoak builds moat when asked to, makes the certificates and the
// hostile ClientHellos, and starts the upstream and then moat.
func setUpSoak(cfg *soakConfig, tmp string, rep *soakReport) (*soakRig, error) {
	rep.Moat = strings.TrimSpace(cfg.moatBin + " " + cfg.label)
	if cfg.moatBin == "" {
		bin, missing := buildMoat(tmp)
		if missing != "" {
			return nil, fmt.Errorf("build moat: %s", missing)
		}
		cfg.moatBin, rep.Moat = bin, moatRevision()
	}
	if missing := checkMoatServer(cfg.moatBin); missing != "" {
		return nil, fmt.Errorf("moat: %s", missing)
	}
	pki, err := newSoakPKI(tmp)
	if err != nil {
		return nil, err
	}
	env := &soakEnv{dialSem: make(chan struct{}, dialSlots), bigCert: pki.bigCert, legitTLS: pki.legitTLS}
	if env.hello, err = captureClientHello(&tls.Config{ServerName: "localhost", MinVersion: tls.VersionTLS12}); err != nil {
		return nil, err
	}
	if env.longSNI, env.nulSNI, err = badSNIHellos(); err != nil {
		return nil, fmt.Errorf("bad SNI ClientHellos: %w", err)
	}
	rig := &soakRig{env: env}
	if err := rig.start(cfg, pki, rep); err != nil {
		rig.tearDown(rep)
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "soak: moat on %s (status %s), big client certificate %d bytes\n", env.tlsAddr, env.statusAddr, pki.bigBytes)
	return rig, nil
}

// start starts the upstream and moat, each on its own CPU when taskset is
// there, and waits until both listen.
func (rig *soakRig) start(cfg *soakConfig, pki *soakPKI, rep *soakReport) error {
	ports := make([]int, 3)
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return err
		}
		ports[i] = p
	}
	addr := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	rig.env.tlsAddr, rig.env.statusAddr = addr(ports[0]), addr(ports[1])
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if rig.upstream, err = startChild("upstream", loadCPU, []string{exe, "upstream", "-listen", addr(ports[2])}, nil); err != nil {
		return err
	}
	if err := waitListening(rig.upstream, addr(ports[2]), 10*time.Second); err != nil {
		return err
	}
	argv := moatCommand(*cfg, pki, rig.env.tlsAddr, rig.env.statusAddr, addr(ports[2]))
	if cfg.cgroupName == "" {
		rep.CgroupNote = "-no-cgroup was given"
	} else if rig.cg, err = newMemCgroup(cfg.cgroupName, cfg.memLimit); err != nil {
		rep.CgroupNote = err.Error()
	} else {
		argv = inCgroup(rig.cg, argv)
	}
	if rig.cg == nil {
		fmt.Fprintf(os.Stderr, "soak: WARNING: moat runs WITHOUT a memory cgroup: %s\n", rep.CgroupNote)
	}
	if rig.moat, err = startChild("moat", proxyCPU, argv, nil); err != nil {
		return err
	}
	if err := waitListening(rig.moat, rig.env.tlsAddr, 10*time.Second); err != nil {
		return err
	}
	return waitListening(rig.moat, rig.env.statusAddr, 10*time.Second)
}

// run drives the attacks and the legitimate client for cfg.duration, or
// until moat dies or the soak is interrupted, then shuts moat down with the
// slow readers still connected.
func (rig *soakRig) run(ctx context.Context, cfg soakConfig, rep *soakReport) {
	start := time.Now()
	legit := &legitClient{}
	w := &watcher{pid: rig.moat.cmd.Process.Pid, status: rig.env.statusAddr, cg: rig.cg, legit: legit, start: start}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	go w.run(watchCtx)

	attackCtx, stopAttacks := context.WithCancel(context.Background())
	holdCtx, releaseHeld := context.WithCancel(context.Background()) // slow readers: held through the SIGTERM
	var attacking, holding sync.WaitGroup
	attacks := buildAttacks(cfg)
	stats := make([]*attackStats, len(attacks))
	for i, a := range attacks {
		stats[i] = &attackStats{}
		actx, wg := attackCtx, &attacking
		if a.name == "slowreader" {
			actx, wg = holdCtx, &holding
		}
		wg.Add(1)
		go func() { defer wg.Done(); runAttack(actx, rig.env, a, stats[i]) }()
	}
	legitCtx, stopLegit := context.WithCancel(context.Background())
	legitDone := make(chan struct{})
	go func() { defer close(legitDone); legit.run(legitCtx, rig.env, cfg.legitEvery, cfg.legitTimeout) }()

	counts := rig.wait(ctx, cfg.duration, start, w, attacks, stats, rep)
	rep.Seconds = time.Since(start).Seconds()
	stopLegit()
	<-legitDone
	for i, a := range attacks {
		rep.Attacks = append(rep.Attacks, attackReport{Name: a.name, attackCounts: counts[i]})
	}
	if !rig.moat.exited() {
		rep.Counters, _ = scrapeMetrics(rig.env.statusAddr, "moat_", "go_goroutines", "process_open_fds", "process_resident_memory_bytes")
	}
	stopAttacks()
	attacking.Wait()
	rig.shutDownMoat(cfg, rep)
	releaseHeld()
	holding.Wait()
	stopWatch()
	w.mu.Lock()
	p := w.proc
	p.DiedAt, p.ShutdownSeconds = rep.Process.DiedAt, rep.Process.ShutdownSeconds
	rep.Process, rep.Samples = p, w.samples
	w.mu.Unlock()
	rep.Legit = legit.report()
}

// wait returns when the duration is over, moat has died or ctx ends,
// printing a progress line every 10 s, and returns the attacks' counts.
// When moat died they are the counts of the second before: the kernel
// closing a dead process's sockets, and the refused dials that follow, are
// not moat's doing.
func (rig *soakRig) wait(ctx context.Context, d time.Duration, start time.Time, w *watcher, attacks []*attack, stats []*attackStats, rep *soakReport) []attackCounts {
	snapshot := func() []attackCounts {
		out := make([]attackCounts, len(stats))
		for i, st := range stats {
			out[i] = st.snapshot()
		}
		return out
	}
	end := time.NewTimer(d)
	defer end.Stop()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := snapshot()
	for i := 1; ; i++ {
		select {
		case <-end.C:
			return snapshot()
		case <-ctx.Done():
			fmt.Fprintln(os.Stderr, "soak: interrupted, reporting what was measured")
			return snapshot()
		case <-rig.moat.done:
			rep.Process.DiedAt = time.Since(start).Seconds()
			fmt.Fprintf(os.Stderr, "soak: moat exited after %.1f s\n", rep.Process.DiedAt)
			return last
		case <-tick.C:
			last = snapshot()
			if i%10 == 0 {
				fmt.Fprintln(os.Stderr, progressLine(time.Since(start), w, attacks, stats))
			}
		}
	}
}

func progressLine(t time.Duration, w *watcher, attacks []*attack, stats []*attackStats) string {
	s := w.latest()
	var b strings.Builder
	fmt.Fprintf(&b, "soak %3.0fs: moat RSS %s, cgroup %s, fds %d; legit ok %d failed %d; open:",
		t.Seconds(), mib(s.RSS), mib(s.CgroupUsage), s.FDs, s.LegitOK, s.LegitFailed)
	for i, a := range attacks {
		fmt.Fprintf(&b, " %s %d", a.name, stats[i].open.Load())
	}
	return b.String()
}

// shutDownMoat sends SIGTERM and times the exit; past moat's own shutdown
// timeout plus 10 s it sends SIGKILL.
func (rig *soakRig) shutDownMoat(cfg soakConfig, rep *soakReport) {
	if rig.moat.exited() {
		return
	}
	t0 := time.Now()
	_ = syscall.Kill(rig.moat.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-rig.moat.done:
	case <-time.After(cfg.shutdown + 10*time.Second):
		rig.sentKill = true
		_ = syscall.Kill(rig.moat.cmd.Process.Pid, syscall.SIGKILL)
		<-rig.moat.done
	}
	rep.Process.ShutdownSeconds = time.Since(t0).Seconds()
}

// tearDown ends every process, reads and removes the cgroup, and fills in
// how moat ended. It runs once; later calls do nothing.
func (rig *soakRig) tearDown(rep *soakReport) {
	if rig.torn {
		return
	}
	rig.torn = true
	if rig.moat != nil && !rig.moat.exited() {
		rig.sentKill = true
		rig.moat.stop()
	}
	if rig.upstream != nil {
		rig.upstream.stop()
	}
	var oomKills int64
	if rig.cg != nil {
		s := rig.cg.stats()
		rep.Cgroup, oomKills = &s, s.OOMKill
		if err := rig.cg.remove(); err != nil {
			fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		}
	}
	if rig.moat != nil {
		rep.Process.Exit, rep.Process.OOMKilled = exitDescription(rig.moat, oomKills, rig.sentKill)
		rep.Process.Tail = rig.moat.tail()
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		rep.ToolMaxRSS = ru.Maxrss << 10
	}
}
