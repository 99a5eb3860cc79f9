package proxy

import (
	"net/netip"
	"time"

	"golang.org/x/time/rate"
)

// newHandshakeRate returns the limiter behind Config.HandshakeRate: at
// most perSecond new handshakes a second, with a burst of one second's
// worth; nil (no limit) for 0. It is shared by the loops and taken once per
// accepted connection, never on the data path.
func newHandshakeRate(perSecond int) *rate.Limiter {
	if perSecond <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(perSecond), perSecond)
}

// admit decides whether a new connection may start. It counts c in
// active and returns its handshake slot and the handshakes evicted for it,
// or the limit that refuses it.
func (s *Server) admit(now time.Time, c *conn, src netip.Addr) (*shake, []*shake, Limit) {
	// The slot is taken before it is checked, so that loops accepting at
	// the same moment cannot together go over --max-concurrent-conns.
	n := s.active.Add(1)
	var reason Limit
	var hs *shake
	var victims []*shake
	switch {
	case s.cfg.MaxConns > 0 && n > int64(s.cfg.MaxConns):
		reason = LimitConns
	case s.rate != nil && !s.rate.AllowN(now, 1):
		reason = LimitHandshakeRate
	default:
		hs, victims, reason = s.guard.admit(c, src, s.orient.guarded())
	}
	if reason != 0 {
		s.active.Add(-1)
	}
	return hs, victims, reason
}
