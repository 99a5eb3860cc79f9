package tlsstate

import (
	"crypto/tls"
	"errors"
	"io"
)

var errInternalRead = errors.New("tlsstate: internal error: renegotiation worker read application data")

// Handshake drives the initial handshake (or a running renegotiation) as far
// as the input allows. It returns nil once done, ErrWantRead when it needs
// more ciphertext, or the fatal error.
func (e *Engine) Handshake() error {
	if err := e.usable(); err != nil {
		return err
	}
	return e.drive()
}

// usable reports why no call can make progress, if none can.
func (e *Engine) usable() error {
	switch {
	case e.closed:
		return ErrClosed
	case e.state == Failed:
		return e.err
	}
	return nil
}

// drive starts or resumes the worker while a handshake runs, and settles the
// state when it finishes.
func (e *Engine) drive() error {
	w := e.bio.wk
	switch {
	case e.state == Open:
		return nil
	case w == nil && e.state == Handshaking:
		if !e.isClient && e.bio.avail() == 0 && !e.bio.eof {
			// A server has nothing to do before the ClientHello; do not
			// start a goroutine for an idle connection.
			return ErrWantRead
		}
		w = startWorker(&e.bio, e.initialHandshake)
	case w != nil && w.done:
		// The worker finished inside the call that started it (crypto/tls
		// refused a renegotiation at once): settle it, never resume it.
	case w != nil && (e.bio.avail() > 0 || e.bio.eof):
		w.resume()
	default:
		return ErrWantRead
	}
	e.bio.releaseInput()
	if !w.done {
		return ErrWantRead
	}
	e.bio.wk = nil
	return e.workerDone(w.err)
}

func (e *Engine) initialHandshake(*worker) error { return e.conn.Handshake() }

// renegotiate runs on the worker: a crypto/tls Read that meets the server's
// HelloRequest runs the whole client handshake inside it (conn.go
// handleRenegotiation). The BIO's watch makes that Read return "would block"
// right after the server's Finished, which is success.
func (e *Engine) renegotiate(w *worker) error {
	n, err := e.conn.Read(w.scratch[:])
	switch {
	case n > 0:
		return errInternalRead
	case isWouldBlock(err):
		return nil
	case err == nil:
		return errInternalRead
	}
	return err
}

func (e *Engine) workerDone(err error) error {
	e.bio.watch = renegotiationWatchOff
	if err != nil {
		return e.fail(err)
	}
	e.handshakes++
	e.state = Open
	if e.handshakes == 1 && e.reneg {
		// Renegotiation exists up to TLS 1.2 only. Ask once, after the
		// handshake, so the data path never calls ConnectionState.
		e.reneg = e.conn.ConnectionState().Version <= tls.VersionTLS12
	}
	e.bio.gate = e.reneg
	if e.owedClose {
		return e.sendCloseNotify()
	}
	return nil
}

func (e *Engine) fail(err error) error {
	if e.state != Failed {
		e.state, e.err = Failed, err
	}
	return e.err
}

// Read returns decrypted plaintext. It drives a pending handshake or
// renegotiation first. Post-handshake messages are handled inside it, and
// what they produce (KeyUpdate answers, renegotiation flights, alerts) lands
// in Output: flush it after every Read, even one that returns an error.
func (e *Engine) Read(p []byte) (int, error) {
	if err := e.usable(); err != nil {
		return 0, err
	}
	if err := e.drive(); err != nil {
		return 0, err
	}
	if e.readErr != nil {
		return 0, e.readErr
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := e.readRecord(p)
		if !e.bio.sawHandshake {
			return n, err
		}
		// The next record is a handshake record on a TLS 1.2 client that
		// may renegotiate: run the renegotiation on a worker, as a handshake.
		e.bio.sawHandshake = false
		e.state = Renegotiating
		e.bio.watch = renegotiationWaitCCS
		startWorker(&e.bio, e.renegotiate)
		if err := e.drive(); err != nil {
			return 0, err
		}
	}
}

// readRecord is one crypto/tls Read over the non-blocking BIO.
func (e *Engine) readRecord(p []byte) (int, error) {
	if !e.plainHeld && e.bio.avail() == 0 && !e.bio.eof {
		// Nothing new for crypto/tls to work on: skip the would-block probe.
		e.bio.releaseInput()
		return 0, ErrWantRead
	}
	n, err := e.conn.Read(p)
	e.bio.releaseInput()
	// A short Read drained crypto/tls's plaintext (bytes.Reader semantics).
	e.plainHeld = n == len(p)
	switch {
	case err == nil:
		return n, nil
	case isWouldBlock(err):
		if n > 0 {
			return n, nil
		}
		return 0, ErrWantRead
	case err == io.EOF:
		e.readErr = io.EOF
		e.cleanEOF = !e.bio.eofSent
		if n > 0 {
			return n, nil
		}
		return 0, io.EOF
	}
	if n > 0 {
		e.fail(err)
		return n, nil
	}
	return 0, e.fail(err)
}

// Write encrypts up to MaxWriteChunk bytes of p into Output. Backpressure is
// applied before crypto/tls is called, because crypto/tls cannot take a
// write back: at HighWater, Write answers ErrWantWrite.
func (e *Engine) Write(p []byte) (int, error) {
	if err := e.usable(); err != nil {
		return 0, err
	}
	if e.writeDone {
		return 0, ErrClosed
	}
	if err := e.drive(); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if e.Pending() >= e.opts.highWater() {
		return 0, ErrWantWrite
	}
	n, err := e.conn.Write(p[:min(len(p), e.opts.maxWriteChunk())])
	if err != nil {
		return n, e.fail(err)
	}
	return n, nil
}

// CloseWrite queues close_notify; reading continues (half-close). While a
// handshake or renegotiation runs, crypto/tls cannot send it yet, so it is
// owed and queued the moment that handshake completes; Write answers
// ErrClosed from now on either way.
func (e *Engine) CloseWrite() error {
	if err := e.usable(); err != nil {
		return err
	}
	if e.writeDone {
		return nil
	}
	e.writeDone = true
	if e.state != Open {
		e.owedClose = true
		return nil
	}
	return e.sendCloseNotify()
}

func (e *Engine) sendCloseNotify() error {
	e.owedClose = false
	if err := e.conn.CloseWrite(); err != nil {
		return e.fail(err)
	}
	return nil
}
