package tlsstate

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
)

// Errors an Engine reports to steer its caller. Any other error is fatal and
// sticky; Err returns it, and Output may hold an alert to flush.
var (
	// ErrWantRead means the engine needs more ciphertext: Feed or Commit it.
	ErrWantRead = errors.New("tlsstate: want read")
	// ErrWantWrite means Output holds HighWater bytes or more: flush it first.
	ErrWantWrite = errors.New("tlsstate: want write")
	// ErrClosed is returned by Write after CloseWrite, and by any call after Close.
	ErrClosed = errors.New("tlsstate: closed")
	// ErrPanic wraps a panic raised during a handshake, in crypto/tls or in a
	// callback of the tls.Config; the engine is Failed and the stack is in
	// the error's text.
	ErrPanic = errors.New("tlsstate: internal error: panic during the handshake")
)

// State is where an Engine is in the connection's life.
type State int

// The states of an Engine (DESIGN 2.4).
const (
	Handshaking   State = iota // the initial handshake runs
	Open                       // handshake done; Read and Write move data
	Renegotiating              // TLS 1.2 client renegotiation runs; Write waits
	Failed                     // a fatal error; Output may hold the alert
	Closed                     // Close was called, or both directions closed and Output flushed
)

func (s State) String() string {
	switch s {
	case Handshaking:
		return "Handshaking"
	case Open:
		return "Open"
	case Renegotiating:
		return "Renegotiating"
	case Failed:
		return "Failed"
	case Closed:
		return "Closed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Options tune an Engine. The zero value is usable.
type Options struct {
	// HighWater bounds Output for Write: at or above it, Write answers
	// ErrWantWrite without calling crypto/tls. Default 64 KiB.
	HighWater int
	// MaxWriteChunk is the most plaintext one Write takes. Default 16 KiB,
	// one full record.
	MaxWriteChunk int
}

func (o Options) highWater() int {
	if o.HighWater > 0 {
		return o.HighWater
	}
	return DefaultHighWater
}

// DefaultHighWater is the Output bound when Options.HighWater is 0. The
// input buffer holds as much ciphertext, and an output buffer starts at
// this size.
const DefaultHighWater = 64 << 10

func (o Options) maxWriteChunk() int {
	if o.MaxWriteChunk > 0 {
		return o.MaxWriteChunk
	}
	return 16 << 10
}

// Engine is one TLS connection over memory: ciphertext in through Feed or
// InputSpace/Commit, ciphertext out through Output/Consume, plaintext through
// Read and Write. It is not safe for concurrent use; one goroutine (the event
// loop) owns it. After every call, flush Output before waiting for input.
type Engine struct {
	bio      bio // first, and by value: one allocation less per engine
	conn     *tls.Conn
	opts     Options
	isClient bool
	reneg    bool // TLS 1.2 client that may accept a renegotiation: watch for handshake records

	state      State
	err        error // fatal error, once Failed
	readErr    error // io.EOF once the peer closed
	cleanEOF   bool  // the EOF came with close_notify
	writeDone  bool  // CloseWrite was called
	owedClose  bool  // CloseWrite came while a handshake ran: send close_notify after it
	closed     bool  // Close was called
	plainHeld  bool  // crypto/tls may still hold decrypted plaintext
	handshakes int
}

// Server returns an engine that accepts a TLS connection.
func Server(cfg *tls.Config, o Options) *Engine {
	e := &Engine{opts: o}
	e.conn = tls.Server(&e.bio, cfg)
	return e
}

// Client returns an engine that initiates a TLS connection. Its first
// Handshake call queues the ClientHello in Output.
func Client(cfg *tls.Config, o Options) *Engine {
	e := &Engine{opts: o, isClient: true}
	e.conn = tls.Client(&e.bio, cfg)
	e.reneg = cfg != nil && cfg.Renegotiation != tls.RenegotiateNever
	return e
}

// InputSpace returns free space to read ciphertext into, for a read(2)
// straight into the engine; call Commit with the count. It is empty when
// 64 KiB are already held. Call Commit after every read, with 0 when it
// returned nothing (EAGAIN, EOF or an error): until then the buffer stays
// taken, and an idle engine must hold none.
func (e *Engine) InputSpace() []byte {
	if e.closed {
		return nil
	}
	return e.bio.inputSpace()
}

// Commit records that n bytes of the last InputSpace were filled.
func (e *Engine) Commit(n int) {
	if e.closed {
		return
	}
	e.bio.commit(n)
}

// Feed copies ciphertext in and returns how much it took.
func (e *Engine) Feed(p []byte) int {
	if e.closed || len(p) == 0 {
		return 0
	}
	n := copy(e.bio.inputSpace(), p)
	e.bio.commit(n)
	return n
}

// FeedEOF records the peer's FIN. crypto/tls sees io.EOF once the input held
// before it is used up.
func (e *Engine) FeedEOF() { e.bio.eof = true }

// Output returns ciphertext owed to the peer. It stays valid until Consume
// or the next engine call.
func (e *Engine) Output() []byte { return e.bio.output() }

// Consume drops n bytes of Output that were sent.
func (e *Engine) Consume(n int) { e.bio.consume(n) }

// Pending is len(Output()).
func (e *Engine) Pending() int { return len(e.bio.output()) }

// Buffered is the ciphertext the engine holds: input not yet taken by
// crypto/tls plus output not yet consumed.
func (e *Engine) Buffered() int { return e.bio.avail() + e.Pending() }

// State reports where the engine is.
func (e *Engine) State() State {
	if e.closed || (e.state == Open && e.readErr != nil && e.writeDone && e.Pending() == 0) {
		return Closed
	}
	return e.state
}

// Err returns the fatal error, or nil.
func (e *Engine) Err() error { return e.err }

// PeerClosedCleanly reports whether Read's io.EOF came with a close_notify
// alert rather than a bare FIN; crypto/tls reports both as io.EOF.
func (e *Engine) PeerClosedCleanly() bool { return e.readErr == io.EOF && e.cleanEOF }

// Handshakes counts completed handshakes: 1 after the initial one, plus one
// per TLS 1.2 renegotiation.
func (e *Engine) Handshakes() int { return e.handshakes }

// ConnectionState returns crypto/tls's view of the connection. While a
// worker runs (Handshaking or Renegotiating) it returns the zero value,
// because crypto/tls would block on its handshake lock.
func (e *Engine) ConnectionState() tls.ConnectionState {
	if e.bio.wk != nil {
		return tls.ConnectionState{}
	}
	return e.conn.ConnectionState()
}

// Close stops a running worker and frees the input buffer. Output stays
// readable so that a last alert can still be flushed; Consume frees it.
// Call it for every engine: a worker parked mid-handshake holds a goroutine
// until Close or more input ends it.
func (e *Engine) Close() {
	if e.closed {
		return
	}
	e.closed = true
	if w := e.bio.wk; w != nil {
		w.stop()
		e.bio.wk = nil
	}
	e.bio.dropInput()
}
