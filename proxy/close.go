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

// recoverPanic, deferred at the entry points of a connection's work, turns
// a panic (a defect in moat) into the end of that one connection: both
// sockets are reset and the defect is logged with its stack, while every
// other connection of the process carries on.
func (c *conn) recoverPanic() {
	r := recover()
	if r == nil {
		return
	}
	c.cfg.Log.Error().Str("client", c.client).Str("panic", fmt.Sprint(r)).Str("stack", string(debug.Stack())).
		Msg("internal error: this connection is closed, others are unaffected")
	c.end(ReasonInternalError, fmt.Errorf("panic: %v", r))
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
func (c *conn) report(reason CloseReason, err error) {
	s := c.tlsInfo
	s.Client = c.client
	s.Duration = time.Since(c.start)
	s.FromClient, s.ToClient = c.o.fromClient(c.relayed.tlsToPln, c.relayed.plnToTLS)
	s.Reason, s.Err = reason, err
	c.cfg.Observer.Closed(&s)
	level := zerolog.InfoLevel
	switch {
	case errors.Is(err, errClosedSilently), errors.Is(err, ErrHandshakeEvicted), errors.Is(err, ErrHandshakeMemory),
		errors.Is(err, ErrClientHelloTimeout) && !c.heardTLS, errors.Is(err, ErrProxyHeader), reason == ReasonRefused:
		// Probes, and what a flood leaves behind: counted, and summed up
		// in the rate-limited limit lines, not one warning each.
		level = zerolog.DebugLevel
	case err != nil && reason != ReasonClosed:
		level = zerolog.WarnLevel
	}
	ev := c.cfg.Log.WithLevel(level).
		Str("client", s.Client).
		Dur("duration_ms", s.Duration).
		Int64("bytes_from_client", s.FromClient).
		Int64("bytes_to_client", s.ToClient).
		Stringer("reason", reason)
	if s.TLSVersion != "" {
		ev = ev.Str("tls_version", s.TLSVersion).Str("cipher", s.Cipher).Bool("resumed", s.Resumed)
		if s.Group != 0 {
			ev = ev.Stringer("tls_group", s.Group)
		}
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
	if s.PeerSPIFFEID != "" {
		ev = ev.Str("peer_spiffe_id", loggable(s.PeerSPIFFEID, maxLoggedName))
	}
	if ae, ok := certs.AsAuthError(err); ok {
		ev = ev.Str("auth_refused", string(ae.Reason))
		if ae.Identity != "" {
			ev = ev.Str("identity", loggable(ae.Identity, maxLoggedName))
		}
		if ae.Required != "" {
			ev = ev.Str("required", loggable(ae.Required, maxLoggedError))
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
