package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// bench tunnels measures what several services in one process cost, next
// to a single-service moat in the same run: RSS before any connection,
// bytes per idle connection, and the CPU of reloading an unchanged file
// (which must leave every listening socket where it was).

func tunnelsMain(args []string) error {
	fs := flag.NewFlagSet("tunnels", flag.ContinueOnError)
	services := fs.Int("services", 50, "services in the file")
	idle := fs.Int("idle", 2000, "idle connections for the bytes-per-connection case")
	reloads := fs.Int("reloads", 20, "SIGHUP reloads of the unchanged file")
	moatBin := fs.String("moat", "", "prebuilt moat binary (default: go build the repository root)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	raiseNoFile()
	stopOnSignal()
	defer stopAll()
	tmp, err := os.MkdirTemp("", "moat-bench-tunnels-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if *moatBin == "" {
		bin, missing := buildMoat(tmp)
		if missing != "" {
			return errors.New(missing)
		}
		*moatBin = bin
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cert, _, err := writeCerts(tmp)
	if err != nil {
		return err
	}
	e := &runEnv{exe: exe, moatBin: *moatBin, tmp: tmp, idle: *idle}
	upstream, target, err := startUpstreamChild(e)
	if err != nil {
		return err
	}
	defer upstream.stop()

	single, err := startMoatChild(e, "single", []string{*moatBin, "server", "--listen", "", "--target", target,
		"--cert", cert.Chain, "--key", cert.Key, "--disable-authentication", "--log-level", "warn"})
	if err != nil {
		return err
	}
	singleRSS := settledRSS(single.proxy)
	singleIdle, _, err := idleRSS(e, single, *idle)
	single.stop()
	if err != nil {
		return fmt.Errorf("single idle: %w", err)
	}

	multi, err := startTunnels(e, tmp, *services, target, cert)
	if err != nil {
		return err
	}
	defer multi.stop()
	multiRSS := settledRSS(multi.proxy)
	cpu, moved, err := reloadCost(multi, *reloads)
	if err != nil {
		return err
	}
	multiIdle, _, err := idleRSS(e, multi, *idle)
	if err != nil {
		return fmt.Errorf("tunnels idle: %w", err)
	}
	printTunnels(tunnelFigures{*services, *idle, singleRSS, multiRSS, singleIdle, multiIdle, cpu, moved})
	return nil
}

// tunnelFigures are the measurements of one bench tunnels run.
type tunnelFigures struct {
	services, idle        int
	singleRSS, multiRSS   int64
	singleIdle, multiIdle float64
	cpu                   []time.Duration
	moved                 int
}

func printTunnels(f tunnelFigures) {
	slices.Sort(f.cpu)
	fmt.Printf("| measure | single-service moat | moat run, %d services |\n|---|---|---|\n", f.services)
	fmt.Printf("| RSS before any connection | %.1f MiB | %.1f MiB (%.2f×) |\n", inMiB(f.singleRSS), inMiB(f.multiRSS), float64(f.multiRSS)/float64(f.singleRSS))
	fmt.Printf("| bytes per idle connection (%d) | %.0f | %.0f |\n", f.idle, f.singleIdle, f.multiIdle)
	fmt.Printf("| CPU per reload of the unchanged file (%d SIGHUPs) | — | median %.2f ms, max %.2f ms |\n", len(f.cpu),
		ms(f.cpu[len(f.cpu)/2]), ms(f.cpu[len(f.cpu)-1]))
	fmt.Printf("| listening sockets moved by the reloads | — | %d of %d |\n", f.moved, f.services)
}

func inMiB(b int64) float64      { return float64(b) / (1 << 20) }
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func settledRSS(c *child) int64  { time.Sleep(time.Second); rss, _, _ := c.groupStats(); return rss }
func portArg(argv []string, a string) []string {
	out := slices.Clone(argv)
	out[slices.Index(out, "--listen")+1] = a
	return out
}

func startUpstreamChild(e *runEnv) (*child, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	target := "127.0.0.1:" + strconv.Itoa(port)
	c, err := startChild("upstream", loadCPU, []string{e.exe, "upstream", "-listen", target}, nil)
	if err == nil {
		err = waitListening(c, target, 5*time.Second)
	}
	return c, target, err
}

// startMoatChild starts argv (with its --listen filled in) on the proxy's
// CPU and waits until it listens.
func startMoatChild(e *runEnv, name string, argv []string) (*instance, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	in := &instance{addr: "127.0.0.1:" + strconv.Itoa(port)}
	if in.proxy, err = startChild(name, proxyCPU, portArg(argv, in.addr), nil); err != nil {
		return nil, err
	}
	if err := waitListening(in.proxy, in.addr, 10*time.Second); err != nil {
		in.proxy.stop()
		return nil, err
	}
	return in, nil
}

// startTunnels writes a file of n services, all relaying to target, and
// runs it; the instance's address is the first service's.
func startTunnels(e *runEnv, dir string, n int, target string, cert certFiles) (*instance, error) {
	var b strings.Builder
	b.WriteString("log-level: info\nservices:\n")
	first := ""
	used := make(map[int]bool)
	for i := range n {
		port, err := freePort()
		for err == nil && used[port] { // freePort may hand out a port twice
			port, err = freePort()
		}
		if err != nil {
			return nil, err
		}
		used[port] = true
		addr := "127.0.0.1:" + strconv.Itoa(port)
		if i == 0 {
			first = addr
		}
		fmt.Fprintf(&b, "  - name: svc%02d\n    mode: server\n    listen: %s\n    target: %s\n    cert: %s\n    key: %s\n    disable-authentication: true\n",
			i, addr, target, cert.Chain, cert.Key)
	}
	path := filepath.Join(dir, "moat.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	in := &instance{addr: first}
	var err error
	logs := &lockedWriter{w: &bytes.Buffer{}}
	if in.proxy, err = startChild("tunnels", proxyCPU, []string{e.moatBin, "run", "--config", path},
		func(cmd *exec.Cmd) { cmd.Stdout, cmd.Stderr = logs, logs }); err != nil {
		return nil, err
	}
	tunnelLogs = logs
	if err := waitListening(in.proxy, first, 10*time.Second); err != nil {
		in.proxy.stop()
		return nil, fmt.Errorf("%w: %s", err, logs.text())
	}
	return in, nil
}

// reloadCost sends SIGHUP n times, waiting for each reload's log line, and
// returns the process's CPU time each one took, and how many listening
// sockets are not the ones it had before.
func reloadCost(in *instance, n int) ([]time.Duration, int, error) {
	pid := in.proxy.cmd.Process.Pid
	before := listeningInodes(pid)
	var cpu []time.Duration
	for i := 1; i <= n; i++ {
		time.Sleep(200 * time.Millisecond) // let the previous reload's goroutines settle
		start := threadsCPU(pid)
		if err := in.proxy.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			return nil, 0, err
		}
		deadline := time.Now().Add(10 * time.Second)
		for tunnelLogs.count("configuration reloaded") < i {
			if time.Now().After(deadline) {
				return nil, 0, fmt.Errorf("reload %d not logged", i)
			}
			time.Sleep(5 * time.Millisecond)
		}
		cpu = append(cpu, threadsCPU(pid)-start)
	}
	after := listeningInodes(pid)
	moved := 0
	for inode := range before {
		if !after[inode] {
			moved++
		}
	}
	if len(before) == 0 {
		return nil, 0, errors.New("no listening socket found in /proc")
	}
	return cpu, moved, nil
}

// threadsCPU is the CPU time of every thread of pid, in nanoseconds
// (schedstat), finer than the clock ticks of /proc/PID/stat.
func threadsCPU(pid int) time.Duration {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			total += time.Duration(ns)
		}
	}
	return total
}

// listeningInodes returns the socket inodes pid holds that are listening
// TCP sockets.
func listeningInodes(pid int) map[string]bool {
	listening := make(map[string]bool)
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(b), "\n")[1:] {
			if fl := strings.Fields(line); len(fl) > 9 && fl[3] == "0A" {
				listening[fl[9]] = true
			}
		}
	}
	held := make(map[string]bool)
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	for _, fd := range fds {
		link, err := os.Readlink(fd)
		if inode, ok := strings.CutPrefix(link, "socket:["); err == nil && ok {
			if inode = strings.TrimSuffix(inode, "]"); listening[inode] {
				held[inode] = true
			}
		}
	}
	return held
}

// tunnelLogs is the output of the moat run child.
var tunnelLogs *lockedWriter

func (l *lockedWriter) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Count(l.w.Bytes(), []byte(s))
}

func (l *lockedWriter) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}
