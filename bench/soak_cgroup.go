package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// memCgroup is the memory cgroup moat runs in during a soak: cgroup v1's
// memory hierarchy when the machine mounts one, else a cgroup v2 child of
// /sys/fs/cgroup. The soak creates it, moves moat in before moat runs any
// code of its own, reads its counters and removes it at the end.
type memCgroup struct {
	version int    // 1 or 2
	dir     string // the cgroup's directory
	limit   int64
}

// cgroupStats are the cgroup's counters after the run.
type cgroupStats struct {
	Version  int    `json:"version"`
	Path     string `json:"path"`
	Limit    int64  `json:"limit_bytes"`
	MaxUsage int64  `json:"max_usage_bytes"` // -1 when the kernel does not keep a peak
	FailCnt  int64  `json:"failcnt"`         // v1 memory.failcnt; v2 the "max" event count
	// MemswFailCnt is v1's memory.memsw.failcnt. With memory+swap limited
	// to the same value, charges fail on this counter first, so on a
	// machine without swap it is the one that moves.
	MemswFailCnt int64 `json:"memsw_failcnt,omitempty"`
	OOM          int64 `json:"oom_events"` // v2 "oom"; v1 under_oom is a state, so 0
	OOMKill      int64 `json:"oom_kills"`  // processes the kernel killed in the cgroup
}

const (
	cgroupV1Memory = "/sys/fs/cgroup/memory"
	cgroupV2Root   = "/sys/fs/cgroup"
)

// newMemCgroup creates the cgroup name with a memory limit (and no swap to
// escape into). The error says why not, for the report.
func newMemCgroup(name string, limit int64) (*memCgroup, error) {
	var cg *memCgroup
	switch {
	case fileExists(filepath.Join(cgroupV1Memory, "memory.limit_in_bytes")):
		cg = &memCgroup{version: 1, dir: filepath.Join(cgroupV1Memory, name), limit: limit}
	case hasV2Memory():
		cg = &memCgroup{version: 2, dir: filepath.Join(cgroupV2Root, name), limit: limit}
	default:
		return nil, errors.New("no cgroup v1 memory hierarchy and no cgroup v2 memory controller")
	}
	if cg.version == 2 {
		// The controller must be enabled for the root's children; this
		// fails inside a container whose root cgroup holds processes.
		if err := writeFile(filepath.Join(cgroupV2Root, "cgroup.subtree_control"), "+memory"); err != nil {
			return nil, err
		}
	}
	if err := os.Mkdir(cg.dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create cgroup: %w", err)
	}
	if err := cg.setLimit(); err != nil {
		cg.remove()
		return nil, err
	}
	return cg, nil
}

func (cg *memCgroup) setLimit() error {
	lim := strconv.FormatInt(cg.limit, 10)
	if cg.version == 1 {
		if err := writeFile(cg.file("memory.limit_in_bytes"), lim); err != nil {
			return err
		}
		if fileExists(cg.file("memory.memsw.limit_in_bytes")) {
			return writeFile(cg.file("memory.memsw.limit_in_bytes"), lim) // memory+swap = memory: no swap
		}
		return nil
	}
	if err := writeFile(cg.file("memory.max"), lim); err != nil {
		return err
	}
	if fileExists(cg.file("memory.swap.max")) {
		return writeFile(cg.file("memory.swap.max"), "0")
	}
	return nil
}

func (cg *memCgroup) file(name string) string { return filepath.Join(cg.dir, name) }

// procsFile is where a process writes its PID to join the cgroup.
func (cg *memCgroup) procsFile() string { return cg.file("cgroup.procs") }

// usage is the memory charged to the cgroup now.
func (cg *memCgroup) usage() int64 {
	if cg.version == 1 {
		return readInt(cg.file("memory.usage_in_bytes"))
	}
	return readInt(cg.file("memory.current"))
}

// stats reads the counters; call it after moat has exited and before remove.
func (cg *memCgroup) stats() cgroupStats {
	s := cgroupStats{Version: cg.version, Path: cg.dir, Limit: cg.limit, MaxUsage: -1}
	if cg.version == 1 {
		s.MaxUsage = readInt(cg.file("memory.max_usage_in_bytes"))
		s.FailCnt = readInt(cg.file("memory.failcnt"))
		s.MemswFailCnt = max(0, readInt(cg.file("memory.memsw.failcnt")))
		s.OOMKill = keyedValue(cg.file("memory.oom_control"), "oom_kill")
		return s
	}
	if fileExists(cg.file("memory.peak")) {
		s.MaxUsage = readInt(cg.file("memory.peak"))
	}
	s.FailCnt = keyedValue(cg.file("memory.events"), "max")
	s.OOM = keyedValue(cg.file("memory.events"), "oom")
	s.OOMKill = keyedValue(cg.file("memory.events"), "oom_kill")
	return s
}

// remove deletes the cgroup. The kernel refuses while the last process is
// still being torn down, so it retries for a few seconds.
func (cg *memCgroup) remove() error {
	var err error
	for range 50 {
		if err = os.Remove(cg.dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("remove cgroup %s: %w", cg.dir, err)
}

func hasV2Memory() bool {
	b, err := os.ReadFile(filepath.Join(cgroupV2Root, "cgroup.controllers"))
	return err == nil && strings.Contains(" "+string(b)+" ", " memory ")
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func writeFile(path, value string) error {
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("write %s to %s: %w", value, path, err)
	}
	return nil
}

func readInt(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return -1
	}
	return v
}

// keyedValue reads "key value" lines (memory.events, memory.oom_control) and
// returns key's value, or 0 when the kernel does not report it.
func keyedValue(path, key string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
