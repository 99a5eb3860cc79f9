package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"github.com/moat-proxy/moat/tlsstate"
)

// relay is one turn of the pump between the two sockets. It reads top to
// bottom as the data path: TLS socket → engine → plaintext socket, then
// plaintext socket → engine → TLS socket, then half-close. The engine's
// output is flushed after every step that may have produced some, reads
// included (a KeyUpdate answer, a renegotiation flight, an alert).
func (c *conn) relay() bool {
	moved := c.flushTLS()
	moved = c.readTLS() || moved
	moved = c.flushPlain() || moved
	moved = c.engineToPlain() || moved
	moved = c.flushTLS() || moved
	moved = c.plainToEngine() || moved
	moved = c.flushTLS() || moved
	if c.phase == phaseClosed {
		return false
	}
	moved = c.halfClose() || moved
	return moved && c.phase != phaseClosed
}

// flushTLS writes the engine's pending ciphertext to the TLS socket.
func (c *conn) flushTLS() bool {
	moved := false
	for c.phase != phaseClosed && c.eng.Pending() > 0 && c.tls.writable {
		n, err := c.tls.write(c.eng.Output())
		if n > 0 {
			c.eng.Consume(n)
			c.lastActive = c.l.now
			moved = true
		}
		if err != nil {
			c.end(ReasonTLSWrite, err)
		}
	}
	return moved
}

// readTLS moves ciphertext from the socket into the engine's input, as much
// as the engine has room for. An engine with full input is not read from
// until the relay has taken plaintext out of it.
func (c *conn) readTLS() bool {
	moved := false
	for c.phase != phaseClosed && c.tls.readable && !c.tls.readEOF {
		space := c.eng.InputSpace()
		if len(space) == 0 {
			break
		}
		n, err := c.tls.read(space)
		// Commit on every outcome, would-block included: an uncommitted
		// InputSpace pins the engine's input buffer, and a connection
		// waiting for its peer must hold none.
		c.eng.Commit(n)
		switch {
		case n > 0:
			if c.refuseUntrustedHeader(space[:n]) {
				return true
			}
			c.lastActive = c.l.now
			c.heardTLS = true
			moved = true
			if !c.chargeHandshake(n) {
				return moved
			}
		case err == io.EOF:
			c.eng.FeedEOF()
			moved = true
		case err != nil:
			c.end(ReasonTLSRead, err)
		}
	}
	return moved
}

// engineToPlain decrypts up to one batch of plaintext and writes it to the
// plaintext socket in one call; what the socket does not take is parked,
// and nothing more is decrypted until the park is empty.
func (c *conn) engineToPlain() bool {
	room := c.toPlain.Room()
	if c.phase == phaseClosed || room == 0 || c.pln.shutWR {
		return false
	}
	if !c.l.srv.budget.mayDecrypt(c.eng.Pending()) {
		return false
	}
	buf := c.l.scratch[:min(room, len(c.l.scratch))]
	n := 0
	var err error
	for n < len(buf) && err == nil {
		var k int
		k, err = c.eng.Read(buf[n:])
		n += k
	}
	moved := n > 0
	if n > 0 {
		c.writePlain(buf[:n])
	}
	switch {
	case err == nil, errors.Is(err, tlsstate.ErrWantRead):
	case err == io.EOF:
		c.toPlain.CloseWrite()
		moved = true
	case c.phase != phaseClosed:
		c.failTLS(err)
	}
	return moved
}

// writePlain writes b to the plaintext socket and parks what it refused.
func (c *conn) writePlain(b []byte) {
	n := 0
	if c.pln.writable {
		var err error
		n, err = c.pln.write(b)
		c.deliveredPlain(n)
		if err != nil {
			c.end(ReasonUpstreamWrite, err)
			return
		}
	}
	c.lastActive = c.l.now
	c.toPlain.Park(b[n:])
}

// flushPlain writes parked plaintext to the plaintext socket.
func (c *conn) flushPlain() bool {
	moved := false
	for c.phase != phaseClosed && c.toPlain.Len() > 0 && c.pln.writable {
		n, err := c.pln.write(c.toPlain.Backlog())
		if n > 0 {
			c.toPlain.Consume(n)
			c.deliveredPlain(n)
			c.lastActive = c.l.now
			moved = true
		}
		if err != nil {
			c.end(ReasonUpstreamWrite, err)
		}
	}
	return moved
}

// plainToEngine reads plaintext and hands it to the engine to encrypt. It
// reads no more than the engine may queue below its high-water mark, so
// every byte read is encrypted at once and the park stays empty unless the
// engine is busy with a handshake.
func (c *conn) plainToEngine() bool {
	moved := c.drainToTLS()
	if c.phase == phaseClosed || c.toTLS.Len() > 0 || c.toTLS.Closed() || !c.pln.readable || c.pln.readEOF {
		return moved
	}
	room := c.l.srv.budget.encryptRoom(c.eng.Pending())
	if room == 0 {
		return moved
	}
	buf := c.l.scratch[:min(room, len(c.l.scratch), c.toTLS.Room())]
	n, err := c.pln.read(buf)
	switch {
	case n > 0:
		c.lastActive = c.l.now
		c.writeEngine(buf[:n])
		return true
	case err == io.EOF:
		c.toTLS.CloseWrite()
		return true
	case err != nil:
		c.end(ReasonUpstreamRead, err)
	}
	return moved
}

// writeEngine encrypts b; a part the engine cannot take now (it is busy
// with a renegotiation, or above high water) is parked.
func (c *conn) writeEngine(b []byte) {
	for len(b) > 0 {
		n, err := c.eng.Write(b)
		c.deliveredTLS(n)
		b = b[n:]
		if err == nil {
			continue
		}
		if errors.Is(err, tlsstate.ErrWantWrite) || errors.Is(err, tlsstate.ErrWantRead) {
			c.toTLS.Park(b)
			return
		}
		c.failTLS(err)
		return
	}
}

// drainToTLS offers parked plaintext to the engine again.
func (c *conn) drainToTLS() bool {
	moved := false
	for c.phase != phaseClosed && c.toTLS.Len() > 0 {
		n, err := c.eng.Write(c.toTLS.Backlog())
		if n > 0 {
			c.toTLS.Consume(n)
			c.deliveredTLS(n)
			moved = true
		}
		if err != nil {
			if !errors.Is(err, tlsstate.ErrWantWrite) && !errors.Is(err, tlsstate.ErrWantRead) {
				c.failTLS(err)
			}
			break
		}
	}
	return moved
}

// halfClose carries an EOF through once the data before it has gone:
// the client's close_notify or FIN becomes shutdown(SHUT_WR) on the
// plaintext socket; the plaintext side's EOF becomes close_notify and then
// SHUT_WR on the TLS socket. When both directions are done the connection
// closes cleanly.
func (c *conn) halfClose() bool {
	moved := false
	if c.toPlain.Drained() && !c.pln.shutWR {
		unix.Shutdown(c.pln.fd, unix.SHUT_WR)
		c.pln.shutWR = true
		moved = true
	}
	if c.toTLS.Drained() && !c.closeSent {
		c.closeSent = true
		c.eng.CloseWrite()
		c.flushTLS()
		moved = true
	}
	if c.closeSent && c.eng.Pending() == 0 && !c.tls.shutWR && c.phase != phaseClosed {
		unix.Shutdown(c.tls.fd, unix.SHUT_WR)
		c.tls.shutWR = true
		moved = true
	}
	if c.pln.shutWR && c.tls.shutWR && c.phase != phaseClosed {
		c.end(ReasonClosed, nil)
		return false
	}
	if (c.pln.shutWR || c.tls.shutWR) && c.phase == phaseRelay {
		c.phase = phaseDrain // one direction is done; the other drains
	}
	return moved
}

// deliveredPlain counts plaintext the plaintext socket accepted, less
// the upstream header that went first.
func (c *conn) deliveredPlain(n int) {
	if skip := min(n, c.relayed.headerLeft); skip > 0 {
		c.relayed.headerLeft -= skip
		n -= skip
	}
	if n > 0 {
		c.relayed.tlsToPln += int64(n)
		c.countRelayed(n, 0)
	}
}

// deliveredTLS counts plaintext the engine took to encrypt.
func (c *conn) deliveredTLS(n int) {
	if n > 0 {
		c.relayed.plnToTLS += int64(n)
		c.countRelayed(0, n)
	}
}

// countRelayed reports bytes from the TLS side and to it, seen from the
// accepting side: in client mode the accepted socket is the plaintext one.
func (c *conn) countRelayed(fromTLS, toTLS int) {
	from, to := c.o.fromClient(int64(fromTLS), int64(toTLS))
	c.cfg.Observer.Relayed(int(from), int(to))
}

// failTLS ends the connection on an engine error after the handshake. A
// renegotiation refused by policy gets a reason of its own and words an
// operator knows: crypto/tls reports a server's refused request as a bare
// "local error: tls: no renegotiation", and a client's attempt as an
// unexpected message.
func (c *conn) failTLS(err error) {
	if explained := c.explainRenegotiation(err); explained != nil {
		c.end(ReasonRenegotiationRefused, explained)
		return
	}
	c.end(ReasonTLS, err)
}

// explainRenegotiation names the policy at fault (in the caller's words,
// Config.ExplainRenegotiation) when err is a renegotiation refused by
// policy, and returns nil for any other error.
func (c *conn) explainRenegotiation(err error) error {
	if c.o.tlsAccepted && tlsstate.IsClientRenegotiation(err) {
		// crypto/tls answers a client's renegotiation attempt with a fatal
		// unexpected_message.
		return fmt.Errorf("client attempted TLS renegotiation, which moat refuses: %w", err)
	}
	if c.o.tlsAccepted || !tlsstate.IsRenegotiationRefused(err) {
		return nil
	}
	policy := c.cfg.TLS.Renegotiation
	switch policy {
	case tls.RenegotiateNever:
		return fmt.Errorf("server requested TLS renegotiation, refused by %s: %w", c.cfg.renegotiationPolicy(policy), err)
	case tls.RenegotiateOnceAsClient:
		return fmt.Errorf("server requested a second TLS renegotiation, refused by %s: %w", c.cfg.renegotiationPolicy(policy), err)
	}
	return nil
}
