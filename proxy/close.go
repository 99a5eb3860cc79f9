package proxy

import (
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/moat-proxy/moat/certs"
)

// fail ends a connection after an engine error. The alert the engine queued
// gets one chance to be written, so the peer learns why. When data was in
// flight the plaintext socket is reset, never closed cleanly, so that the
// far end cannot mistake the truncation for an orderly end.
func (c *conn) fail(reason string, err error, resetPlain bool) {
	if c.phase == phaseClosed {
		return
	}
	if c.phase == phaseHandshake && c.handshook.IsZero() {
		c.tlsInfo.SNI = c.eng.ConnectionState().ServerName // the name asked for, refused or not
		c.l.srv.cfg.Observer.Handshake(nil, time.Since(c.start), err)
	}
	c.tls.writable = true // one attempt: a full socket buffer just drops the alert
	c.flushTLS()
	c.closeWith(reason, err, false, resetPlain)
}

// recoverPanic, deferred at the entry points of a connection's work, turns
// a panic (a defect in moat) into the end of that one connection: both
// sockets are reset and the defect is logged with its stack, while every
// other connection of the process carries on.
func (c *conn) recoverPanic() {
	r := recover()
	if r == nil {
		return
	}
	c.l.srv.cfg.Log.Error().Str("client", c.client).Str("panic", fmt.Sprint(r)).Str("stack", string(debug.Stack())).
		Msg("internal error: this connection is closed, others are unaffected")
	c.closeWith("internal error", fmt.Errorf("panic: %v", r), true, true)
}

// abort ends a connection for a reason of moat's own (idle or shutdown
// timeout). A connection cut at the shutdown deadline is reset on both
// sides whatever it holds: moat cannot know that a stream that paused was
// complete, so neither peer may take the cut for an orderly end. An idle
// connection gets close_notify and clean closes, unless data is still in
// moat's hands, when it is reset too.
func (c *conn) abort(err error) {
	if c.phase == phaseClosed {
		return
	}
	reason := "idle timeout"
	if errors.Is(err, errClosedByShutdown) {
		reason = "shutdown"
	}
	if reason == "shutdown" || c.toPlain.Len() > 0 || c.toTLS.Len() > 0 || c.eng.Buffered() > 0 {
		c.closeWith(reason, err, true, true)
		return
	}
	if c.phase == phaseRelay && !c.closeSent {
		c.closeSent = true
		c.eng.CloseWrite()
		c.flushTLS()
	}
	c.closeWith(reason, err, false, false)
}

// closeWith closes both sockets, resetting those asked for (SO_LINGER 0
// sends RST), releases the engine and the pipes, and logs the end.
func (c *conn) closeWith(reason string, err error, resetTLS, resetPlain bool) {
	if c.phase == phaseClosed {
		return
	}
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
	c.report(reason, err)
}

func (c *conn) closeSide(s *side, reset bool) {
	if s.fd < 0 {
		return
	}
	if reset {
		unix.SetsockoptLinger(s.fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	}
	c.l.remove(s.fd)
	c.l.closeLater(s.fd)
	s.fd = -1
}

// report writes the one log line per connection and tells the observer.
func (c *conn) report(reason string, err error) {
	s := c.tlsInfo
	s.Client = c.client
	s.Duration = time.Since(c.start)
	s.FromClient, s.ToClient = c.tlsToPln, c.plnToTLS
	if c.mode == ModeClient {
		s.FromClient, s.ToClient = c.plnToTLS, c.tlsToPln
	}
	s.Reason, s.Err = reason, err
	c.l.srv.cfg.Observer.Closed(&s)
	level := zerolog.InfoLevel
	switch {
	case errors.Is(err, errClosedSilently), errors.Is(err, ErrHandshakeEvicted), errors.Is(err, ErrHandshakeMemory),
		errors.Is(err, ErrClientHelloTimeout) && !c.heardTLS:
		// Probes, and what a flood leaves behind: counted, and summed up
		// in the rate-limited limit lines, not one warning each.
		level = zerolog.DebugLevel
	case err != nil && reason != "closed":
		level = zerolog.WarnLevel
	}
	ev := c.l.srv.cfg.Log.WithLevel(level).
		Str("client", s.Client).
		Dur("duration_ms", s.Duration).
		Int64("bytes_from_client", s.FromClient).
		Int64("bytes_to_client", s.ToClient).
		Str("reason", reason)
	if s.TLSVersion != "" {
		ev = ev.Str("tls_version", s.TLSVersion).Str("cipher", s.Cipher)
	}
	// Every string a peer chose goes through loggable: bounded and escaped.
	if s.SNI != "" {
		ev = ev.Str("sni", loggable(s.SNI, maxLoggedName))
	}
	if s.ALPN != "" {
		ev = ev.Str("alpn", loggable(s.ALPN, maxLoggedName))
	}
	if s.Peer != "" {
		ev = ev.Str("peer", loggable(s.Peer, maxLoggedName))
	}
	if ae, ok := certs.AsAuthError(err); ok {
		ev = ev.Str("auth_refused", string(ae.Reason))
		if ae.Identity != "" {
			ev = ev.Str("identity", loggable(ae.Identity, maxLoggedName))
		}
	}
	if sne, ok := certs.AsServerNameError(err); ok {
		err = sne // crypto/tls's own words, "no certificates configured", mislead
	}
	if err != nil {
		ev = ev.Str(zerolog.ErrorFieldName, loggable(err.Error(), maxLoggedError))
	}
	ev.Msg("connection closed")
}
