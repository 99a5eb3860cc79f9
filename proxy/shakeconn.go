package proxy

import (
	"errors"
	"fmt"
)

// Errors that end a server-mode handshake for a bound of moat's own.
var (
	// ErrClientHelloTimeout: no ClientHello was answered within
	// Config.ClientHelloTimeout.
	ErrClientHelloTimeout = errors.New("client hello timeout")
	// ErrHandshakeEvicted: a newcomer needed the slot of this connection,
	// which had not sent a complete ClientHello.
	ErrHandshakeEvicted = errors.New("handshake evicted")
	// ErrHandshakeMemory: unfinished handshakes held more than
	// Config.HandshakeMemory, and this one was the oldest.
	ErrHandshakeMemory = errors.New("handshake cut: handshake memory budget exceeded")
	// ErrHandshakeTooLarge: the client sent more during its handshake than
	// Config.MaxClientCertBytes allows.
	ErrHandshakeTooLarge = errors.New("handshake too large")
)

// handshakeAllowance is what a client's handshake may send besides its
// certificate chain: the ClientHello (a few KiB, with post-quantum key
// shares), CertificateVerify, Finished and record overhead.
const handshakeAllowance = 32 << 10

// What an unfinished server-mode handshake is charged against
// Config.HandshakeMemory: a parked handshake goroutine with crypto/tls's
// state, once the first byte arrived, plus twice what the client sent
// (crypto/tls keeps the record being read and the handshake message being
// assembled, which grows by doubling). A client stalled in the middle of
// a 250 KiB certificate chain was measured holding about half a MiB.
const (
	shakeBaseCost   = 16 << 10
	shakeCostFactor = 2
)

// noteAnswer moves a server-mode handshake from waiting for its
// ClientHello to the rest of it, once the engine has answered (a
// ServerHello, or a HelloRetryRequest): the connection can no longer be
// evicted for a newcomer, and its deadline becomes the handshake timeout.
func (c *conn) noteAnswer() {
	if c.answered || !c.o.guarded() || c.eng.Pending() == 0 || c.phase != phaseHandshake {
		return
	}
	c.answered = true
	if c.hs != nil {
		c.l.srv.guard.answer(c.hs)
	}
	c.l.timer.schedule(c, c.start.Add(c.cfg.HandshakeTimeout))
}

// chargeHandshake accounts n ciphertext bytes received during a
// server-mode handshake, against the per-handshake bound and the memory
// budget. It reports false when the connection was ended for it.
func (c *conn) chargeHandshake(n int) bool {
	if !c.o.guarded() || c.phase != phaseHandshake || c.hs == nil {
		return true
	}
	cost := int64(n) * shakeCostFactor
	if c.shakeIn == 0 {
		cost += shakeBaseCost
	}
	c.shakeIn += n
	if limit := c.cfg.MaxClientCertBytes; limit > 0 && c.shakeIn > limit+handshakeAllowance {
		c.end(ReasonHandshakeTooLarge, fmt.Errorf("%w: the client sent over %d bytes during its handshake (--max-client-cert-bytes %d plus %d for the rest of its flight)",
			ErrHandshakeTooLarge, limit+handshakeAllowance, limit, handshakeAllowance))
		return false
	}
	victims := c.l.srv.guard.charge(c.hs, cost)
	for _, v := range victims {
		if v == c.hs {
			c.evict(v)
			continue
		}
		v.c.l.post(func() { v.c.evict(v) })
	}
	return c.phase != phaseClosed
}

// evict ends a connection the guard chose as a victim, if it is still
// that handshake: it may have finished or closed since. The socket is
// reset (there is nothing to say to a peer that sent no ClientHello, and
// no way to send an encrypted alert mid-handshake); each eviction is
// counted, and logged at most once a second per loop.
func (c *conn) evict(v *shake) {
	if c.hs != v || c.phase == phaseClosed {
		return
	}
	c.hs = nil // the guard has already given the slot back
	c.cfg.Observer.Evicted(v.evicted)
	c.l.logLimit(evictionLine(&c.l.srv.cfg, v.evicted), nil)
	if v.evicted == LimitHandshakeMemory {
		c.end(ReasonHandshakeMemory, fmt.Errorf("%w: the oldest unfinished handshake is cut", ErrHandshakeMemory))
		return
	}
	c.end(ReasonHandshakeEvicted, fmt.Errorf("%w: %s", ErrHandshakeEvicted, v.evicted))
}

// evictionLine is the rate-limited log line for evictions for a limit.
func evictionLine(cfg *Config, l Limit) string {
	if l == LimitHandshakeMemory {
		return "handshake cut: " + cfg.explain(l) + "; the oldest unfinished handshake was cut"
	}
	who := "the oldest connection without a ClientHello"
	if l == LimitHandshakesPerSource {
		who = "that source's oldest connection without a ClientHello"
	}
	return "handshake evicted: " + cfg.explain(l) + "; " + who + " made room"
}
