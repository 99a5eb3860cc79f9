package tlsstate

import "sync"

// Buffers are pooled as *[]byte so that Get and Put never allocate, and an
// engine returns them as soon as they are empty: an idle engine holds none.
const (
	inputCap     = 64 << 10  // bound on ciphertext held before crypto/tls takes it
	outputCap    = 64 << 10  // starting size; a handshake flight or HighWater+record may grow it
	maxPooledCap = 256 << 10 // larger buffers are left to the GC instead of pinning memory in the pool
)

var (
	inputPool  = sync.Pool{New: func() any { b := make([]byte, inputCap); return &b }}
	outputPool = sync.Pool{New: func() any { b := make([]byte, 0, outputCap); return &b }}
)

func getInput() *[]byte { return inputPool.Get().(*[]byte) }

func putInput(b *[]byte) { inputPool.Put(b) }

func getOutput() *[]byte {
	b := outputPool.Get().(*[]byte)
	*b = (*b)[:0]
	return b
}

func putOutput(b *[]byte) {
	if cap(*b) <= maxPooledCap {
		outputPool.Put(b)
	}
}
