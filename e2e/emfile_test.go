package e2e

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// cpuTicks returns the user+system clock ticks a process has used.
func cpuTicks(t testing.TB, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	return utime + stime
}

// TestAcceptSurvivesEMFILE: with its file descriptors exhausted moat stops
// accepting for a moment instead of spinning on EMFILE, and serves new
// clients once descriptors are free again.
func TestAcceptSurvivesEMFILE(t *testing.T) {
	up := startUpstream(t, upperEcho)
	f := serverFiles(t)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	script := fmt.Sprintf("ulimit -n 48 && exec %s server --listen %s --target %s --cert %s --key %s --disable-authentication",
		moatBin, addr, up.addr(), f.Cert, f.Key)
	m := start(t, "/bin/sh", "-c", script)
	m.waitFor(t, "moat is listening", 10*time.Second)

	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := 0; i < 80; i++ { // more than moat has descriptors for
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connect %d: %v", i, err)
		}
		held = append(held, c)
	}
	m.waitFor(t, "accept paused", 5*time.Second)
	before := cpuTicks(t, m.cmd.Process.Pid)
	time.Sleep(time.Second)
	used := cpuTicks(t, m.cmd.Process.Pid) - before
	t.Logf("moat used %d clock ticks in the second it was out of descriptors", used)
	if used > 30 { // 100 ticks a second is one core spinning
		t.Fatalf("moat used %d ticks of CPU in one second while out of descriptors: it spins", used)
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := tlsDialFiles(addr, f)
		if err == nil {
			echoLine(t, c, "after emfile")
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no client served after the descriptors were freed: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
