package memlimit

import (
	"math"
	"testing"
	"testing/fstest"
	"time"
)

func TestFromCgroup(t *testing.T) {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	const v1Unlimited = "9223372036854771712\n"
	for _, tc := range []struct {
		name   string
		files  fstest.MapFS
		source Source
		cgroup int64
		at     string
	}{
		{"not linux", fstest.MapFS{}, None, 0, ""},
		{"v2 in a cgroup namespace", fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("134217728\n"),
		}, CgroupV2, 128 << 20, "/sys/fs/cgroup/memory.max"},
		{"v2 unlimited", fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"sys/fs/cgroup/memory.max": file("max\n"),
		}, None, 0, ""},
		{"v2 limit on a parent group", fstest.MapFS{
			"proc/self/cgroup":                          file("0::/kubepods/pod1/c1\n"),
			"sys/fs/cgroup/kubepods/pod1/c1/memory.max": file("max\n"),
			"sys/fs/cgroup/kubepods/pod1/memory.max":    file("268435456\n"),
			"sys/fs/cgroup/kubepods/memory.max":         file("1073741824\n"),
		}, CgroupV2, 256 << 20, "/sys/fs/cgroup/kubepods/pod1/memory.max"},
		{"v2 group not under the mount", fstest.MapFS{
			"proc/self/cgroup":         file("0::/docker/abc\n"),
			"sys/fs/cgroup/memory.max": file("67108864\n"),
		}, CgroupV2, 64 << 20, "/sys/fs/cgroup/memory.max"},
		{"v1", fstest.MapFS{
			"proc/self/cgroup": file("5:cpuacct,cpu:/x\n4:memory:/docker/abc\n0::/\n"),
			"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": file("104857600\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes":            file(v1Unlimited),
		}, CgroupV1, 100 << 20, "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes"},
		{"v1 unlimited", fstest.MapFS{
			"proc/self/cgroup":                           file("4:memory:/\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes": file(v1Unlimited),
		}, None, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lim, err := fromCgroup(tc.files)
			if err != nil {
				t.Fatal(err)
			}
			if lim.Source != tc.source || lim.Cgroup != tc.cgroup || lim.File != tc.at {
				t.Fatalf("got %v %d from %q, want %v %d from %q", lim.Source, lim.Cgroup, lim.File, tc.source, tc.cgroup, tc.at)
			}
			want := int64(math.MaxInt64)
			if tc.source != None {
				want = int64(float64(tc.cgroup) * Fraction)
			}
			if lim.Bytes != want {
				t.Errorf("soft limit %d, want %d", lim.Bytes, want)
			}
		})
	}
}

func TestFromCgroupRejectsGarbage(t *testing.T) {
	fsys := fstest.MapFS{
		"proc/self/cgroup":         {Data: []byte("0::/\n")},
		"sys/fs/cgroup/memory.max": {Data: []byte("lots\n")},
	}
	if lim, err := fromCgroup(fsys); err == nil || lim.Source != None {
		t.Fatalf("memory.max %q: got %v, %v; want an error and no limit", "lots", lim.Source, err)
	}
}

// TestReleasePolicy walks the policy through a burst and its aftermath.
func TestReleasePolicy(t *testing.T) {
	const mib = 1 << 20
	t0 := time.Unix(1000, 0)
	type step struct {
		at          time.Duration
		inUse, idle uint64
		release     bool
		allocs      uint64 // 0: the quiet rule is not in play
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"too soon after the last release", []step{
			{2 * time.Second, 120 * mib, 5 * mib, false, 0},
			{4 * time.Second, 15 * mib, 100 * mib, false, 0},
			{10 * time.Second, 15 * mib, 100 * mib, true, 0},
		}},
		{"release after the burst", []step{
			{20 * time.Second, 120 * mib, 5 * mib, false, 0},
			{22 * time.Second, 15 * mib, 100 * mib, true, 0},
			{24 * time.Second, 15 * mib, 100 * mib, false, 0}, // within releaseEvery
			{32 * time.Second, 15 * mib, 100 * mib, false, 0}, // peak reset to 15: not fallen by half
		}},
		{"little idle", []step{
			{20 * time.Second, 120 * mib, 5 * mib, false, 0},
			{22 * time.Second, 15 * mib, 15 * mib, false, 0},
		}},
		{"large steady heap", []step{
			{20 * time.Second, 200 * mib, 40 * mib, false, 0},
			{22 * time.Second, 150 * mib, 90 * mib, false, 0}, // fell, not by half
		}},
		{"second burst after the rate limit", []step{
			{20 * time.Second, 120 * mib, 5 * mib, false, 0},
			{22 * time.Second, 15 * mib, 100 * mib, true, 0},
			{26 * time.Second, 150 * mib, 5 * mib, false, 0},
			{28 * time.Second, 20 * mib, 130 * mib, false, 0}, // 6 s after the last
			{32 * time.Second, 20 * mib, 130 * mib, true, 0},
		}},
		{"quiet with a large heap uncollected", []step{
			{20 * time.Second, 60 * mib, 1 * mib, false, 500 * mib}, // nothing to compare with yet
			{22 * time.Second, 60 * mib, 1 * mib, true, 500*mib + 100<<10},
			{24 * time.Second, 8 * mib, 1 * mib, false, 500*mib + 200<<10},
		}},
		{"busy with a large heap", []step{
			{20 * time.Second, 60 * mib, 1 * mib, false, 500 * mib},
			{22 * time.Second, 70 * mib, 1 * mib, false, 550 * mib},
			{24 * time.Second, 65 * mib, 1 * mib, false, 600 * mib},
		}},
		{"quiet with a small heap", []step{
			{20 * time.Second, 12 * mib, 10 * mib, false, 500 * mib},
			{22 * time.Second, 12 * mib, 10 * mib, false, 500 * mib},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p releasePolicy
			p.last = t0 // as if a release had just happened
			for i, s := range tc.steps {
				if got := p.release(t0.Add(s.at), heapSample{inUse: s.inUse, idle: s.idle, allocs: s.allocs}); got != s.release {
					t.Fatalf("step %d (%s, in use %d MiB, idle %d MiB): release = %v, want %v",
						i, s.at, s.inUse/mib, s.idle/mib, got, s.release)
				}
			}
		})
	}
}
