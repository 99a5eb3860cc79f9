package proxy

import "sync"

// pipeLimit bounds the plaintext a pipe parks for its sink.
const pipeLimit = 64 << 10

// pipe carries plaintext one way, from a source (the TLS engine or a
// plaintext socket) to a sink socket. The relay writes straight to the sink
// and parks only what the sink did not take; while anything is parked the
// relay stops reading the source, which is the backpressure. A pipe knows
// the difference between "closed after the data" (CloseWrite: the sink gets
// EOF once the backlog is written) and "broken now" (Break: the backlog is
// dropped and the sink is reset).
//
// A pipe is owned by one event loop goroutine and is not safe for
// concurrent use. Its zero value is an empty, open pipe with the default
// limit; an empty pipe holds no buffer.
type pipe struct {
	buf    *[]byte // pooled backing array, nil while empty
	data   []byte  // the parked remainder, a window into *buf
	limit  int
	closed bool  // CloseWrite called: EOF follows the data
	broken error // Break called: drop everything, reset the sink
}

var pipePool = sync.Pool{New: func() any { b := make([]byte, pipeLimit); return &b }}

// Room is how many more bytes the pipe may park; 0 means stop reading the
// source. A pipe with a backlog has no room at all, so that bytes reach the
// sink in order without a second buffer.
func (p *pipe) Room() int {
	if p.broken != nil || p.closed || len(p.data) > 0 {
		return 0
	}
	return p.max()
}

func (p *pipe) max() int {
	if p.limit > 0 {
		return p.limit
	}
	return pipeLimit
}

// SetLimit sets the most the pipe parks; n <= 0 restores the default.
func (p *pipe) SetLimit(n int) { p.limit = n }

// Park keeps b, the part of a write the sink did not take. It copies b; the
// caller may reuse it. Park panics if b exceeds Room, because that would be
// a relay bug that unbounds memory.
func (p *pipe) Park(b []byte) {
	if len(b) == 0 || p.broken != nil {
		return
	}
	if len(b) > p.Room() {
		panic("proxy: pipe.Park beyond Room")
	}
	if p.buf == nil {
		p.buf = pipePool.Get().(*[]byte)
		if cap(*p.buf) < p.max() {
			b := make([]byte, p.max())
			p.buf = &b
		}
	}
	p.data = append((*p.buf)[:0], b...)
}

// Backlog returns the parked bytes still to be written to the sink.
func (p *pipe) Backlog() []byte { return p.data }

// Len is the number of parked bytes.
func (p *pipe) Len() int { return len(p.data) }

// Consume drops the first n parked bytes after the sink took them, and
// returns the buffer to the pool once the backlog is empty.
func (p *pipe) Consume(n int) {
	p.data = p.data[n:]
	if len(p.data) == 0 {
		p.release()
	}
}

func (p *pipe) release() {
	p.data = nil
	if p.buf != nil {
		pipePool.Put(p.buf)
		p.buf = nil
	}
}

// CloseWrite records that the source ended: once the backlog is written the
// sink gets EOF (shutdown(SHUT_WR)).
func (p *pipe) CloseWrite() { p.closed = true }

// Closed reports whether CloseWrite was called.
func (p *pipe) Closed() bool { return p.closed }

// Break drops the backlog now and records why; the sink is to be reset,
// not closed cleanly, so that the far end sees a truncation as an error.
func (p *pipe) Break(err error) {
	if p.broken == nil {
		p.broken = err
	}
	p.release()
}

// Err returns the error given to Break, or nil.
func (p *pipe) Err() error { return p.broken }

// Drained reports whether the source ended and every byte reached the sink:
// the moment to shut the sink's write side.
func (p *pipe) Drained() bool { return p.closed && len(p.data) == 0 && p.broken == nil }

// Free returns the buffer to the pool; the pipe must not be used after.
func (p *pipe) Free() { p.release() }
