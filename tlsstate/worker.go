package tlsstate

import (
	"fmt"
	"net"
	"runtime/debug"
)

// worker runs one crypto/tls handshake (the initial one, or a TLS 1.2 client
// renegotiation) on its own goroutine. crypto/tls cannot resume a handshake
// after a "would block" (the error is sticky in c.handshakeErr), so the
// handshake must see a BIO that blocks while empty. The worker blocks by
// parking; the caller's feed call wakes it and waits until it parks again or
// finishes, so each engine call is synchronous and deterministic, in the same
// shape as crypto/tls's own QUICConn (quic.go: blockedc/signalc).
//
// Asynchronous hand-off (return at once, and call an Options.OnReady from the
// worker when it parks) would slot in at resume and park; it is not built.
type worker struct {
	wake    chan struct{} // caller -> worker: input arrived, or closing
	parked  chan struct{} // worker -> caller: parked for input, or done
	closing bool          // written by the caller before wake, read by the worker after it
	done    bool          // written by the worker before its last send on parked
	err     error
	scratch [1]byte // renegotiation: crypto/tls Read needs a non-empty buffer
}

// startWorker runs fn on a new worker and waits until it parks or finishes.
func startWorker(b *bio, fn func(*worker) error) *worker {
	w := &worker{wake: make(chan struct{}), parked: make(chan struct{})}
	b.wk = w
	go handshakeWorker(w, fn)
	<-w.parked
	return w
}

// handshakeWorker is a named function so that goroutine dumps say what a
// parked engine goroutine is doing. The handshake runs the caller's
// callbacks (GetCertificate, VerifyConnection and the like): a panic in one
// of them fails this handshake with an error, instead of ending the process
// with every other connection in it.
func handshakeWorker(w *worker, fn func(*worker) error) {
	defer func() {
		if r := recover(); r != nil {
			w.err = fmt.Errorf("%w: %v\n%s", ErrPanic, r, debug.Stack())
		}
		w.done = true
		w.parked <- struct{}{}
	}()
	w.err = fn(w)
}

// park is called on the worker goroutine by the BIO when it has no input.
func (w *worker) park() error {
	if w.closing {
		return net.ErrClosed
	}
	w.parked <- struct{}{}
	<-w.wake
	if w.closing {
		return net.ErrClosed
	}
	return nil
}

// resume is called by the caller: it lets the worker run until it parks or
// finishes.
func (w *worker) resume() {
	w.wake <- struct{}{}
	<-w.parked
}

// stop makes every further BIO read fail and waits for the worker to exit,
// so that Close never leaks the goroutine.
func (w *worker) stop() {
	w.closing = true
	for !w.done {
		w.resume()
	}
}
