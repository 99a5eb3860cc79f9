package proxy

import (
	"net/netip"
	"sync"
	"time"
)

// tokenBucket admits at most rate events per second, with a burst of one
// second's worth. It is shared by the loops, hence the lock; it is taken
// once per accepted connection, never on the data path.
type tokenBucket struct {
	mu     sync.Mutex
	rate   float64
	tokens float64
	last   time.Time
}

func (b *tokenBucket) init(perSecond int) {
	b.rate = float64(perSecond)
	b.tokens = b.rate
}

// allow takes one token if there is one. A zero rate allows everything.
func (b *tokenBucket) allow(now time.Time) bool {
	if b.rate <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		b.tokens = min(b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
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
	case !s.rate.allow(now):
		reason = LimitHandshakeRate
	default:
		hs, victims, reason = s.guard.admit(c, src, s.cfg.Mode == ModeServer)
	}
	if reason != 0 {
		s.active.Add(-1)
	}
	return hs, victims, reason
}
