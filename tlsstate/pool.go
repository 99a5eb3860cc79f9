package tlsstate

import (
	"sync"
	"sync/atomic"
)

// Buffers are pooled as *[]byte so that Get and Put never allocate, and an
// engine returns them as soon as they are empty: an idle engine holds none.
const (
	inputCap     = DefaultHighWater // bound on ciphertext held before crypto/tls takes it
	outputCap    = DefaultHighWater // starting size; a handshake flight or HighWater+record may grow it
	maxPooledCap = 256 << 10        // larger buffers are left to the GC instead of pinning memory in the pool
)

var (
	inputPool  = sync.Pool{New: func() any { b := make([]byte, inputCap); return &b }}
	outputPool = sync.Pool{New: func() any { b := make([]byte, 0, outputCap); return &b }}
)

// held counts the bytes of buffer capacity engines hold right now: taken
// from a pool and not yet given back. An idle engine holds none, so this is
// the memory of connections that are moving data (or owe some).
var held atomic.Int64

// BufferBytes returns the capacity of the input and output buffers that
// engines hold right now. It is exported as a metric, and tests use it to
// prove that idle connections hold no buffer.
func BufferBytes() int64 { return held.Load() }

func getInput() *[]byte {
	b := inputPool.Get().(*[]byte)
	held.Add(int64(cap(*b)))
	return b
}

func putInput(b *[]byte) {
	held.Add(-int64(cap(*b)))
	inputPool.Put(b)
}

func getOutput() *[]byte {
	b := outputPool.Get().(*[]byte)
	*b = (*b)[:0]
	held.Add(int64(cap(*b)))
	return b
}

// grewOutput accounts for an output buffer that append reallocated (a
// handshake flight, HighWater plus a record).
func grewOutput(from, to int) { held.Add(int64(to - from)) }

func putOutput(b *[]byte) {
	held.Add(-int64(cap(*b)))
	if cap(*b) <= maxPooledCap {
		outputPool.Put(b)
	}
}
