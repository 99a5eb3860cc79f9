package tlsstate

import (
	"io"
	"net"
	"time"
)

// TLS record framing, read from the cleartext record header. This is framing,
// not cryptography: it lets the BIO hand crypto/tls one record at a time and
// know the type of the next one.
const (
	recordHeaderLen        = 5
	recordTypeCCS          = 20
	recordTypeHandshake    = 22
	renegotiationWatchOff  = 0
	renegotiationWaitCCS   = 1 // worker renegotiating; server's ChangeCipherSpec not seen yet
	renegotiationWaitFinal = 2 // CCS handed over; the next record is the server's Finished
	renegotiationDone      = 3 // Finished handed over; further reads would block
)

// wouldBlock is what the BIO returns when it has nothing to give and must not
// block. crypto/tls keeps a Temporary net.Error out of its sticky read error
// once the handshake is complete (conn.go readRecordOrCCS), so the Read can be
// retried after more ciphertext is fed. It is a zero-size value: returning it
// does not allocate.
type wouldBlock struct{}

func (wouldBlock) Error() string   { return "tlsstate: would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

var errWouldBlock error = wouldBlock{}

func isWouldBlock(err error) bool { _, ok := err.(wouldBlock); return ok }

// bio is the net.Conn crypto/tls runs over. Input is ciphertext fed by the
// caller; output is a queue that never refuses or shortens a write, because
// crypto/tls makes every write error sticky and ignores short writes.
//
// Ownership: exactly one goroutine touches a bio at a time. Either the
// caller, or the worker while the caller waits for it to park or finish; the
// channel hand-off in worker orders the two. Only the caller releases buffers.
type bio struct {
	in       *[]byte // pooled; (*in)[r:w] is ciphertext not yet handed over
	r, w     int
	spaceOut bool // InputSpace handed out and not yet committed: in must stay
	eof      bool // the peer's FIN was fed
	eofSent  bool // io.EOF was returned to crypto/tls

	out *[]byte // pooled; (*out)[o:] is ciphertext owed to the peer
	o   int

	// Framing of what was handed over: the current record's header and the
	// body bytes of it still to hand over.
	hdr      [recordHeaderLen]byte
	hdrN     int
	bodyLeft int

	wk           *worker // non-nil: an empty Read parks the worker instead of would-block
	gate         bool    // refuse a handshake record at a record boundary (renegotiation detection)
	sawHandshake bool    // the gate refused a handshake record
	watch        int     // renegotiation watch, see renegotiationWaitCCS
}

// avail is the number of input bytes not yet handed to crypto/tls.
func (b *bio) avail() int { return b.w - b.r }

// Read hands crypto/tls at most the rest of one record, so that the engine
// always knows the type of the next one and crypto/tls never holds more than
// one record.
func (b *bio) Read(p []byte) (int, error) {
	for {
		if b.watch == renegotiationDone {
			return 0, errWouldBlock
		}
		if b.wk == nil && b.gate && b.hdrN == 0 && b.avail() > 0 && (*b.in)[b.r] == recordTypeHandshake {
			b.sawHandshake = true
			return 0, errWouldBlock
		}
		if n := b.take(p); n > 0 {
			return n, nil
		}
		if b.eof {
			b.eofSent = true
			return 0, io.EOF
		}
		if b.wk == nil {
			return 0, errWouldBlock
		}
		if err := b.wk.park(); err != nil {
			return 0, err
		}
	}
}

// take copies input into p, stopping at the end of the current record.
func (b *bio) take(p []byte) int {
	n := 0
	for n < len(p) && b.r < b.w {
		src := (*b.in)[b.r:b.w]
		var k int
		if b.hdrN < recordHeaderLen {
			k = copy(p[n:], src[:min(len(src), recordHeaderLen-b.hdrN)])
			copy(b.hdr[b.hdrN:], src[:k])
			b.hdrN += k
			if b.hdrN == recordHeaderLen {
				b.bodyLeft = int(b.hdr[3])<<8 | int(b.hdr[4])
			}
		} else {
			k = copy(p[n:], src[:min(len(src), b.bodyLeft)])
			b.bodyLeft -= k
		}
		b.r += k
		n += k
		if b.hdrN == recordHeaderLen && b.bodyLeft == 0 {
			b.recordDone(b.hdr[0])
			break
		}
	}
	return n
}

// recordDone advances the renegotiation watch. A TLS 1.2 renegotiation ends
// with the server's ChangeCipherSpec and Finished; once the Finished is handed
// over, reads would block so that the worker's Read returns with the
// handshake instead of waiting for application data.
func (b *bio) recordDone(typ byte) {
	b.hdrN = 0
	switch {
	case b.watch == renegotiationWaitCCS && typ == recordTypeCCS:
		b.watch = renegotiationWaitFinal
	case b.watch == renegotiationWaitFinal:
		b.watch = renegotiationDone
	}
}

// Write queues everything; it never fails and never writes short.
func (b *bio) Write(p []byte) (int, error) {
	if b.out == nil {
		b.out = getOutput()
	}
	buf := *b.out
	if b.o > 0 && len(buf)+len(p) > cap(buf) {
		// Reuse the consumed prefix before growing.
		buf = buf[:copy(buf, buf[b.o:])]
		b.o = 0
	}
	before := cap(buf)
	*b.out = append(buf, p...)
	if after := cap(*b.out); after != before {
		grewOutput(before, after)
	}
	return len(p), nil
}

func (b *bio) output() []byte {
	if b.out == nil {
		return nil
	}
	return (*b.out)[b.o:]
}

func (b *bio) consume(n int) {
	if b.out == nil || n <= 0 {
		return
	}
	b.o = min(b.o+n, len(*b.out))
	if b.o == len(*b.out) {
		putOutput(b.out)
		b.out, b.o = nil, 0
	}
}

// inputSpace returns the free tail of the input buffer, compacting first.
func (b *bio) inputSpace() []byte {
	if b.in == nil {
		b.in = getInput()
	}
	if b.r == b.w {
		b.r, b.w = 0, 0
	} else if b.w == len(*b.in) && b.r > 0 {
		b.w = copy(*b.in, (*b.in)[b.r:b.w])
		b.r = 0
	}
	b.spaceOut = true
	return (*b.in)[b.w:]
}

func (b *bio) commit(n int) {
	b.spaceOut = false
	if b.in != nil {
		b.w += max(0, min(n, len(*b.in)-b.w))
	}
	b.releaseInput()
}

// releaseInput returns an empty input buffer to the pool, unless the caller
// holds a slice of it from InputSpace.
func (b *bio) releaseInput() {
	if b.in != nil && b.r == b.w && !b.spaceOut {
		putInput(b.in)
		b.in, b.r, b.w = nil, 0, 0
	}
}

func (b *bio) dropInput() {
	b.spaceOut = false
	b.r = b.w
	b.releaseInput()
}

type bioAddr struct{}

func (bioAddr) Network() string { return "tlsstate" }
func (bioAddr) String() string  { return "memory" }

// The rest of net.Conn: a BIO has no socket, no address and no deadlines.
func (b *bio) Close() error                     { return nil }
func (b *bio) LocalAddr() net.Addr              { return bioAddr{} }
func (b *bio) RemoteAddr() net.Addr             { return bioAddr{} }
func (b *bio) SetDeadline(time.Time) error      { return nil }
func (b *bio) SetReadDeadline(time.Time) error  { return nil }
func (b *bio) SetWriteDeadline(time.Time) error { return nil }
