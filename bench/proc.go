package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The CPUs the roles are pinned to: the proxy gets one core to itself, the
// load client and the upstream share the other, so on 2 cores the proxy's
// figures are not disturbed by the load generating them.
const (
	proxyCPU = 0
	loadCPU  = 1
)

// raiseNoFile lifts the soft RLIMIT_NOFILE to the hard limit. It goes through
// syscall.Setrlimit on purpose: that also stops the Go runtime from restoring
// the original soft limit in children, so hitch, haproxy and stunnel inherit
// the raised limit too.
func raiseNoFile() {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}

// child is one process the harness started, in its own process group so that
// it and any workers it forks can be measured and killed together.
type child struct {
	name   string
	cmd    *exec.Cmd
	output *bytes.Buffer // stdout+stderr unless the caller took stdout
	done   chan struct{}
	err    error
}

var (
	childrenMu    sync.Mutex
	children      = map[*child]bool{}
	tasksetBin, _ = exec.LookPath("taskset")
)

// startChild starts argv pinned to cpu. Children die with the harness:
// Pdeathsig for a crash of the harness, stopAll for an interrupt or the end.
func startChild(name string, cpu int, argv []string, prep func(*exec.Cmd)) (*child, error) {
	if tasksetBin != "" {
		argv = append([]string{tasksetBin, "-c", strconv.Itoa(cpu)}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c := &child{name: name, cmd: cmd, output: &bytes.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &lockedWriter{w: c.output}, &lockedWriter{w: c.output}
	if prep != nil {
		prep(cmd)
	}
	childrenMu.Lock()
	defer childrenMu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	children[c] = true
	go func() {
		c.err = cmd.Wait()
		if ps := cmd.ProcessState; ps != nil {
			reapedCPU.Add(int64(ps.UserTime() + ps.SystemTime()))
		}
		close(c.done)
	}()
	return c, nil
}

// lockedWriter serialises the writes of the two pipes copying into one buffer.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.w.Len() > 1<<20 { // a chatty child must not grow without bound
		return len(p), nil
	}
	return l.w.Write(p)
}

// exited reports whether the child has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// tail is the last bytes of what the child printed, for error messages.
func (c *child) tail() string {
	s := strings.TrimSpace(c.output.String())
	if len(s) > 400 {
		s = "..." + s[len(s)-400:]
	}
	return strings.ReplaceAll(s, "\n", " | ")
}

// stop ends the child's process group: SIGTERM, then SIGKILL after 2 s.
func (c *child) stop() {
	defer func() {
		childrenMu.Lock()
		delete(children, c)
		childrenMu.Unlock()
	}()
	pgid := c.cmd.Process.Pid
	if c.exited() {
		// The leader is reaped, so its id is only ours while workers of its
		// group remain; signal the group only then.
		if _, _, procs := c.groupStats(); procs > 0 {
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
		return
	}
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(2 * time.Second):
	}
	// Workers may outlive the leader; the group is still ours to end.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-c.done:
	case <-time.After(2 * time.Second):
	}
}

// stopAll ends every child still running.
func stopAll() {
	childrenMu.Lock()
	list := make([]*child, 0, len(children))
	for c := range children {
		list = append(list, c)
	}
	childrenMu.Unlock()
	for _, c := range list {
		c.stop()
	}
}

// stopOnSignal makes an interrupt end the children before the harness exits.
func stopOnSignal() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-ch
		fmt.Fprintf(os.Stderr, "bench: %v, stopping children\n", s)
		stopAll()
		os.Exit(130)
	}()
}

// freePort asks the kernel for an unused loopback port. The port is free only
// until someone else takes it, which on this machine's loopback is good enough.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitListening waits until addr accepts TCP connections, the child exits, or
// the timeout passes.
func waitListening(c *child, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if c.exited() {
			return fmt.Errorf("%s exited: %v: %s", c.name, c.err, c.tail())
		}
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s not listening on %s after %v: %s", c.name, addr, timeout, c.tail())
}

// groupStats sums VmRSS (bytes) and CPU time over every process in the
// child's process group, so forked workers (hitch, haproxy, stunnel) count.
func (c *child) groupStats() (rss int64, cpu time.Duration, procs int) {
	pgid := c.cmd.Process.Pid
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		stat, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		// Fields after the ")" that ends the command name: state is field 3,
		// so pgrp (field 5) is index 2 and utime/stime (14, 15) are 11, 12.
		i := bytes.LastIndexByte(stat, ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 13 || f[2] != strconv.Itoa(pgid) {
			continue
		}
		procs++
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		cpu += time.Duration(ut+st) * time.Second / clockTicks
		rss += vmRSS(d + "/status")
	}
	return rss, cpu, procs
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports here.
const clockTicks = 100

func vmRSS(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// reapedCPU is the CPU time of every child that has exited, so that a
// measurement can tell its own processes' CPU from everyone else's.
var reapedCPU atomic.Int64

// maxForeign is the share of the machine's CPU time that processes other
// than the harness's may use during a measurement before it is repeated.
const maxForeign = 0.05

// cpuMark is a snapshot of the machine's and the harness's CPU time.
type cpuMark struct {
	busy, total time.Duration // all CPUs, from /proc/stat
	ours        time.Duration // proxy + upstream now, plus reaped children
}

func markCPU(in *instance) cpuMark {
	var m cpuMark
	m.busy, m.total = machineCPU()
	_, p, _ := in.proxy.groupStats()
	m.ours = p + time.Duration(reapedCPU.Load())
	if in.upstream != nil {
		_, u, _ := in.upstream.groupStats()
		m.ours += u
	}
	return m
}

// foreignCPU is the CPU time between a and b that went to processes not
// started by the harness, and its share of all CPU time. /proc counts in
// 10 ms ticks, so a few ticks either way are noise, not a neighbour.
func foreignCPU(a, b cpuMark) (time.Duration, float64) {
	total := b.total - a.total
	if total <= 0 {
		return 0, 0
	}
	foreign := max(0, (b.busy-a.busy)-(b.ours-a.ours))
	return foreign, float64(foreign) / float64(total)
}

// disturbed reports whether the foreign CPU time is more than tick noise
// and more than maxForeign of the machine.
func disturbed(foreign time.Duration, share float64) bool {
	return foreign > 50*time.Millisecond && share > maxForeign
}

// machineCPU reads busy and total CPU time of all CPUs from /proc/stat.
func machineCPU() (busy, total time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseInt(f, 10, 64)
		d := time.Duration(v) * time.Second / clockTicks
		total += d
		// user, nice, system only: irq and softirq time is not charged to
		// any process, so the loopback traffic of the harness's own
		// processes would otherwise look like a neighbour's work.
		if i <= 2 {
			busy += d
		}
	}
	return busy, total
}

// waitQuiet waits, at most max, until the CPUs are less than 10% busy over a
// quarter second, so a measurement does not start in the middle of someone
// else's build. It does not fail: guarded checks the measurement itself.
func waitQuiet(max time.Duration) {
	if max <= 0 {
		return
	}
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		b0, t0 := machineCPU()
		time.Sleep(250 * time.Millisecond)
		b1, t1 := machineCPU()
		if t1 <= t0 || float64(b1-b0)/float64(t1-t0) < 0.10 {
			return
		}
	}
}
