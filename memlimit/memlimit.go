// Package memlimit keeps moat's memory within what its container allows:
// the Go runtime gets a soft memory limit below the cgroup's, and memory
// freed after a burst of connections goes back to the operating system in
// seconds rather than minutes.
//
// Typical use, at start-up:
//
//	lim, err := memlimit.Apply()
//	log(lim.Bytes, lim.Source, err)
//	go memlimit.ReturnFreed(ctx)
package memlimit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
)

// Fraction of the cgroup's memory limit given to the Go runtime as its soft
// limit. The rest is for what the runtime does not count but the cgroup
// does: kernel socket buffers, page cache, the runtime's own overshoot.
const Fraction = 0.9

// Source says where the soft memory limit came from.
type Source int

const (
	None     Source = iota // no limit: GOMEMLIMIT unset and no cgroup limit
	Env                    // GOMEMLIMIT, left to the runtime
	CgroupV2               // memory.max
	CgroupV1               // memory.limit_in_bytes
)

func (s Source) String() string {
	switch s {
	case Env:
		return "GOMEMLIMIT"
	case CgroupV2:
		return "cgroup v2"
	case CgroupV1:
		return "cgroup v1"
	}
	return "none"
}

// Limit is the soft memory limit in force and where it came from.
type Limit struct {
	Bytes  int64 // the runtime's soft limit; math.MaxInt64 = none
	Source Source
	File   string // the cgroup file the limit was read from
	Cgroup int64  // the cgroup's limit, of which Bytes is Fraction
}

// Apply sets the runtime's soft memory limit to Fraction of the cgroup's
// memory limit, unless GOMEMLIMIT is set (the runtime has applied that
// already). An error reading the cgroup leaves the limit unset.
func Apply() (Limit, error) {
	if _, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		return Limit{Bytes: debug.SetMemoryLimit(-1), Source: Env}, nil
	}
	lim, err := fromCgroup(os.DirFS("/"))
	if lim.Source != None {
		debug.SetMemoryLimit(lim.Bytes)
	}
	return lim, err
}

// fromCgroup derives the limit from the cgroup files under fsys (the root
// file system): cgroup v2 if the process's v2 group or one above it has a
// memory.max, else v1's memory.limit_in_bytes.
func fromCgroup(fsys fs.FS) (Limit, error) {
	none := Limit{Bytes: math.MaxInt64}
	v2, v1, err := ownCgroups(fsys)
	if err != nil {
		return none, err
	}
	for _, c := range []struct {
		src       Source
		group     string
		mount     string
		file      string
		unlimited func(string) bool
	}{
		{CgroupV2, v2, "sys/fs/cgroup", "memory.max", func(v string) bool { return v == "max" }},
		{CgroupV1, v1, "sys/fs/cgroup/memory", "memory.limit_in_bytes", func(v string) bool {
			n, err := strconv.ParseInt(v, 10, 64)
			return err == nil && n >= 1<<62 // "no limit" is the largest page-aligned int64
		}},
	} {
		if c.group == "" {
			continue
		}
		limit, file, found, err := smallestLimit(fsys, c.mount, c.group, c.file, c.unlimited)
		if err != nil {
			return none, err
		}
		if !found {
			continue // no such hierarchy here
		}
		if limit == 0 {
			return none, nil // found, and unlimited
		}
		return Limit{Bytes: int64(float64(limit) * Fraction), Source: c.src, File: "/" + file, Cgroup: limit}, nil
	}
	return none, nil
}

// ownCgroups reads /proc/self/cgroup: the v2 group ("0::/path") and the v1
// memory controller's group ("N:...memory...:/path").
func ownCgroups(fsys fs.FS) (v2, v1 string, err error) {
	data, err := fs.ReadFile(fsys, "proc/self/cgroup")
	if errors.Is(err, fs.ErrNotExist) {
		return "", "", nil // not Linux
	} else if err != nil {
		return "", "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		id, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		controllers, group, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		switch {
		case id == "0" && controllers == "":
			v2 = group
		case containsWord(controllers, "memory"):
			v1 = group
		}
	}
	return v2, v1, nil
}

func containsWord(list, w string) bool {
	for _, x := range strings.Split(list, ",") {
		if x == w {
			return true
		}
	}
	return false
}

// smallestLimit reads file in group and every group above it up to the
// mount, and returns the smallest limit (0 = none) and where it was found.
// A limit on a parent group binds the process as surely as its own; and
// inside a container without a cgroup namespace the process's group may
// not exist under the mount, while the mount's root is the container's
// group. found reports whether any of the files exists.
func smallestLimit(fsys fs.FS, mount, group, file string, unlimited func(string) bool) (limit int64, at string, found bool, err error) {
	for dir := path.Clean("/" + group); ; dir = path.Dir(dir) {
		name := path.Join(mount, dir, file)
		data, err := fs.ReadFile(fsys, name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return 0, "", false, err
		default:
			found = true
			v := strings.TrimSpace(string(data))
			if unlimited(v) {
				break
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return 0, "", false, fmt.Errorf("/%s: %q is not a memory limit", name, v)
			}
			if limit == 0 || n < limit {
				limit, at = n, name
			}
		}
		if dir == "/" {
			return limit, at, found, nil
		}
	}
}
