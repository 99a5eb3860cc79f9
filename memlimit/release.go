package memlimit

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// How ReturnFreed decides. The Go runtime returns free heap to the
// operating system gradually, paced by its heap goal; and after a burst of
// connections closes, their memory is garbage nobody has collected: a quiet
// process may not collect it for two minutes. RSS stayed at many times its
// usual size for minutes.
const (
	checkEvery   = 2 * time.Second
	releaseEvery = 10 * time.Second // at most one forced release per this long
	minIdle      = 16 << 20         // free heap worth a forced garbage collection
	quietAlloc   = 1 << 20          // allocated in one check, at most, by a quiet process
)

// heapSample is the part of runtime/metrics ReturnFreed reads.
type heapSample struct {
	inUse  uint64 // objects (live, or dead and not yet swept), their spans' unused space, goroutine stacks
	idle   uint64 // free, and not yet returned to the operating system
	allocs uint64 // allocated since the process started
}

// releasePolicy decides when to return free heap, at most once per
// releaseEvery:
//   - when a lot of heap is idle and the heap in use has fallen to half its
//     peak since the last release: a collection found a burst's memory dead;
//   - when the process has gone quiet with a large heap in use: it may be a
//     burst's memory that nothing will collect for minutes. Returning it
//     costs one garbage collection, of a heap that is idle anyway.
//
// A busy process, or one whose heap is merely large and steady, is left to
// the runtime.
type releasePolicy struct {
	peak uint64
	last time.Time
	prev heapSample
}

// release reports whether to return free memory now, given a sample taken
// at now; it assumes the caller then does.
func (p *releasePolicy) release(now time.Time, s heapSample) bool {
	p.peak = max(p.peak, s.inUse)
	quiet := p.prev.allocs != 0 && s.allocs-p.prev.allocs < quietAlloc
	p.prev = s
	shrunk := s.idle >= minIdle && s.inUse <= p.peak/2
	uncollected := quiet && s.inUse >= minIdle
	if !shrunk && !uncollected || now.Sub(p.last) < releaseEvery {
		return false
	}
	p.last, p.peak = now, s.inUse
	return true
}

// ReturnFreed returns freed heap memory to the operating system after a
// burst, until ctx ends. See releasePolicy for when.
func ReturnFreed(ctx context.Context) {
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/stacks:bytes"},
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/gc/heap/allocs:bytes"},
	}
	var p releasePolicy
	tick := time.NewTicker(checkEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			metrics.Read(samples)
			s := heapSample{
				inUse:  samples[0].Value.Uint64() + samples[1].Value.Uint64() + samples[2].Value.Uint64(),
				idle:   samples[3].Value.Uint64(),
				allocs: samples[4].Value.Uint64(),
			}
			if p.release(now, s) {
				debug.FreeOSMemory()
			}
		}
	}
}
