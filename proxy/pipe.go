package proxy

import "sync"

// pipe carries plaintext one way, from a source (the TLS engine or a
// plaintext socket) to a sink socket. The relay writes straight to the sink
// and parks only what the sink did not take; while anything is parked the
// relay stops reading the source, which is the backpressure. "Closed after
// the data" is the pipe's (CloseWrite: the sink gets EOF once the backlog is
// written); "broken now" is the connection's: it resets the sockets and
// drops the backlog with Free.
//
// A pipe is owned by one event loop goroutine and is not safe for
// concurrent use. Its limit, the most it parks, is the relay's batch
// (budget.batch); the zero value parks nothing. An empty pipe holds no
// buffer.
type pipe struct {
	buf    *[]byte // pooled backing array, nil while empty
	data   []byte  // the parked remainder, a window into *buf
	limit  int     // the most the pipe parks
	closed bool    // CloseWrite called: EOF follows the data
}

var pipePool = sync.Pool{New: func() any { return new([]byte) }}

// Room is how many more bytes the pipe may park; 0 means stop reading the
// source. A pipe with a backlog has no room at all, so that bytes reach the
// sink in order without a second buffer.
func (p *pipe) Room() int {
	if p.closed || len(p.data) > 0 {
		return 0
	}
	return p.limit
}

// Park keeps b, the part of a write the sink did not take. It copies b; the
// caller may reuse it. Park panics if b exceeds Room, because that would be
// a relay bug that unbounds memory.
func (p *pipe) Park(b []byte) {
	if len(b) == 0 {
		return
	}
	if len(b) > p.Room() {
		panic("proxy: pipe.Park beyond Room")
	}
	if p.buf == nil {
		p.buf = pipePool.Get().(*[]byte)
		if cap(*p.buf) < p.limit {
			*p.buf = make([]byte, 0, p.limit)
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

// Drained reports whether the source ended and every byte reached the sink:
// the moment to shut the sink's write side.
func (p *pipe) Drained() bool { return p.closed && len(p.data) == 0 }

// Free drops the backlog and returns the buffer to the pool; the pipe must
// not be used after.
func (p *pipe) Free() { p.release() }
