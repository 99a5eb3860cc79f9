package proxy

import (
	"errors"
	"fmt"
	"time"
)

// CloseReason is why a connection ended. It is decided here, in one
// place: which reasons send the engine's alert first, which count as a
// failed handshake, and which sockets each one resets. String gives the
// stable word the connection log line and dashboards use.
type CloseReason uint8

// The reasons a connection ends.
const (
	ReasonClosed               CloseReason = iota + 1 // both directions ended in order
	ReasonHandshake                                   // the TLS handshake failed
	ReasonHandshakeTimeout                            // no handshake within HandshakeTimeout
	ReasonClientHelloTimeout                          // no ClientHello answered within ClientHelloTimeout
	ReasonHandshakeTooLarge                           // the client sent more than MaxClientCertBytes allows
	ReasonHandshakeEvicted                            // a newcomer needed this waiting connection's slot
	ReasonHandshakeMemory                             // cut to keep unfinished handshakes within HandshakeMemory
	ReasonDial                                        // the far side could not be connected to
	ReasonTLSRead                                     // reading the TLS socket failed
	ReasonTLSWrite                                    // writing the TLS socket failed
	ReasonUpstreamRead                                // reading the plaintext socket failed
	ReasonUpstreamWrite                               // writing the plaintext socket failed
	ReasonTLS                                         // a TLS error after the handshake
	ReasonRenegotiationRefused                        // a renegotiation moat's policy refuses
	ReasonIdleTimeout                                 // nothing moved for IdleTimeout
	ReasonShutdown                                    // still open at the shutdown deadline
	ReasonInternalError                               // a defect in moat (a recovered panic)
	ReasonMaxLifetime                                 // open for MaxConnLifetime
	ReasonProxyHeader                                 // refused at its PROXY protocol header (see HeaderRefusal)
	ReasonRefused                                     // a limit refused it once its PROXY header named its source
)

var reasonWords = [...]string{
	ReasonClosed: "closed", ReasonHandshake: "handshake", ReasonHandshakeTimeout: "handshake timeout",
	ReasonClientHelloTimeout: "client hello timeout", ReasonHandshakeTooLarge: "handshake too large",
	ReasonHandshakeEvicted: "handshake evicted", ReasonHandshakeMemory: "handshake memory",
	ReasonDial: "dial", ReasonTLSRead: "tls read", ReasonTLSWrite: "tls write",
	ReasonUpstreamRead: "upstream read", ReasonUpstreamWrite: "upstream write", ReasonTLS: "tls",
	ReasonRenegotiationRefused: "renegotiation refused", ReasonIdleTimeout: "idle timeout",
	ReasonShutdown: "shutdown", ReasonInternalError: "internal error",
	ReasonMaxLifetime: "max lifetime",
	ReasonProxyHeader: "proxy header", ReasonRefused: "refused",
}

func (r CloseReason) String() string {
	if int(r) < len(reasonWords) && reasonWords[r] != "" {
		return reasonWords[r]
	}
	return "unknown"
}

// sendsAlert reports whether the engine may hold an alert for the peer
// that deserves one attempt to be written before the close: the reasons
// that end a connection on a TLS error or a handshake limit.
func (r CloseReason) sendsAlert() bool {
	switch r {
	case ReasonHandshake, ReasonHandshakeTimeout, ReasonClientHelloTimeout, ReasonHandshakeTooLarge,
		ReasonTLS, ReasonRenegotiationRefused:
		return true
	}
	return false
}

// failsHandshake reports whether ending an unfinished handshake for r is
// reported to the observer as a failed handshake.
func (r CloseReason) failsHandshake() bool {
	return r.sendsAlert() || r == ReasonHandshakeEvicted || r == ReasonHandshakeMemory
}

// resets says which sockets a close for r resets (SO_LINGER 0: RST)
// rather than closes in order. The rule is that a peer must never take a
// cut for a complete stream: a side whose stream moat cannot finish is
// reset. holding says whether moat still holds data of the connection
// (parked plaintext, or ciphertext in the engine).
func (r CloseReason) resets(o orientation, holding bool) (tls, plain bool) {
	accepted := o.tlsAccepted // the accepted socket is the TLS one
	switch r {
	case ReasonClosed, ReasonClientHelloTimeout, ReasonHandshakeTooLarge, ReasonProxyHeader:
		return false, false
	case ReasonRefused:
		return true, false // as a refusal at accept: nothing was said
	case ReasonHandshake, ReasonHandshakeTimeout:
		return false, !accepted // client mode: the local application's stream is cut
	case ReasonHandshakeEvicted, ReasonHandshakeMemory:
		return true, false // nothing to say to a peer mid-ClientHello, and no alert to send
	case ReasonDial:
		return accepted, !accepted // the accepted side sees an error, not an empty stream
	case ReasonTLSRead, ReasonTLSWrite, ReasonTLS, ReasonRenegotiationRefused:
		return false, true
	case ReasonUpstreamRead, ReasonUpstreamWrite:
		return true, false
	case ReasonIdleTimeout:
		return holding, holding
	}
	// shutdown, internal error, max lifetime: cut whatever was in flight.
	// A connection ended for its age may be mid-message; a clean close
	// would let a peer take the cut for the whole stream.
	return true, true
}

// Errors a connection ends with for a reason of moat's own; the
// connection summary carries them, so metrics classify them with
// errors.Is rather than by their text.
var (
	// ErrHandshakeTimeout: no handshake within Config.HandshakeTimeout.
	ErrHandshakeTimeout = errors.New("no handshake")
	// ErrPeerClosed: the peer closed its socket before the handshake
	// finished.
	ErrPeerClosed = errors.New("peer closed the connection")
	// errClosedSilently ends a connection whose peer closed it without
	// sending a byte: what TCP health checks and port scans do. It is
	// logged at debug level, so that a probe every few seconds does not
	// fill the logs with warnings; it is still counted as a failed
	// handshake.
	errClosedSilently = fmt.Errorf("%w without sending a byte (a TCP health check or port scan)", ErrPeerClosed)
	// errClosedByShutdown is the error of connections still open when the
	// shutdown timeout ran out.
	errClosedByShutdown = errors.New("shutdown")
	// ErrMaxLifetime ends a connection open for Config.MaxConnLifetime.
	ErrMaxLifetime = errors.New("reached the connection lifetime limit")
)

// end is where every connection ends. A reason that may carry an alert
// gives the engine's queued alert one chance to be written (a full socket
// buffer just drops it); an unfinished handshake ended for a reason that
// fails it is reported to the observer; then both sockets close, reset as
// the reason says, and the one log line is written.
func (c *conn) end(r CloseReason, err error) {
	if c.phase == phaseClosed {
		return
	}
	if r.failsHandshake() && c.phase == phaseHandshake && c.handshook.IsZero() {
		c.tlsInfo.SNI = c.eng.ConnectionState().ServerName // the name asked for, refused or not
		err = c.routeFailure(c.tlsInfo.SNI, err)
		c.cfg.Observer.Handshake(nil, time.Since(c.start), err)
	}
	if r.sendsAlert() {
		c.tls.writable = true
		c.flushTLS()
		if c.phase == phaseClosed {
			return
		}
	}
	if r == ReasonIdleTimeout && c.phase.relaying() && !c.holding() && !c.closeSent {
		c.closeSent = true // a quiet connection is told so before the clean close
		c.eng.CloseWrite()
		c.flushTLS()
		if c.phase == phaseClosed {
			return
		}
	}
	resetTLS, resetPlain := r.resets(c.o, c.holding())
	c.phase = phaseClosed
	c.l.timer.schedule(c, time.Time{})
	c.doneShaking()
	c.l.srv.active.Add(-1) // before the close, so a peer that sees it sees the count
	c.closeSide(&c.tls, resetTLS)
	c.closeSide(&c.pln, resetPlain)
	c.eng.Close()
	c.eng.Consume(c.eng.Pending()) // an alert that could not be sent: give the buffer back
	c.toPlain.Free()
	c.toTLS.Free()
	c.report(r, err)
}

// holding reports whether moat still holds data of the connection.
func (c *conn) holding() bool {
	return c.toPlain.Len() > 0 || c.toTLS.Len() > 0 || c.eng.Buffered() > 0
}
