package proxy

import (
	"net/netip"
	"sync"
)

// handshakeGuard bounds what strangers can hold before they are
// authenticated, across every loop of a server:
//
//   - handshakes in flight (--max-concurrent-handshakes), and per source
//     address (--max-handshakes-per-source: an IPv4 address, or an IPv6
//     /64, which one host can fill on its own);
//   - the memory unfinished handshakes hold (--handshake-memory).
//
// A newcomer over a count limit evicts the oldest connection that has not
// yet had its ClientHello answered (from its own source, for the
// per-source limit) instead of being refused: a silent or trickling peer
// holds a slot only until someone needs it, so an attacker who holds the
// cap cannot lock clients out. A handshake over the memory budget cuts the
// oldest unfinished handshake, answered ones first (they hold the most:
// a client certificate chain being sent). Only when there is no one to
// evict is the newcomer refused.
//
// The guard only counts and chooses; the victims are closed by their own
// loops (see conn.evict). It is taken once per accept, once when a
// ClientHello is answered, once per read during a handshake, and once at
// its end; never on the data path.
type handshakeGuard struct {
	mu        sync.Mutex
	max       int   // handshakes in flight; 0 = no cap
	perSource int   // handshakes in flight per source; 0 = no cap
	budget    int64 // bytes held by unfinished handshakes; 0 = no budget

	n        int
	held     int64
	waiting  shakeList // ClientHello not answered yet, oldest first
	answered shakeList // ClientHello answered, oldest first
	sources  map[netip.Addr]*shakeSource
}

// shakeSource is one source address's handshakes in flight.
type shakeSource struct {
	n       int
	waiting shakeList
}

// shake is one handshake known to the guard. Its fields are the guard's,
// under its lock; the connection keeps a pointer to know itself when an
// eviction arrives.
type shake struct {
	c        *conn
	src      netip.Addr // invalid for unix sockets: no per-source limit
	answered bool
	gone     bool // left the guard: finished, closed or evicted
	evicted  Limit
	held     int64

	prev, next   *shake // in waiting or answered
	sprev, snext *shake // in its source's waiting list
}

// shakeList is an intrusive list, oldest first. bySource picks which
// pair of links it threads through.
type shakeList struct {
	head, tail *shake
	bySource   bool
}

func (l *shakeList) links(s *shake) (prev, next **shake) {
	if l.bySource {
		return &s.sprev, &s.snext
	}
	return &s.prev, &s.next
}

func (l *shakeList) push(s *shake) {
	prev, next := l.links(s)
	*prev, *next = l.tail, nil
	if l.tail != nil {
		_, tailNext := l.links(l.tail)
		*tailNext = s
	} else {
		l.head = s
	}
	l.tail = s
}

func (l *shakeList) remove(s *shake) {
	prev, next := l.links(s)
	if *prev != nil {
		_, n := l.links(*prev)
		*n = *next
	} else {
		l.head = *next
	}
	if *next != nil {
		p, _ := l.links(*next)
		*p = *prev
	} else {
		l.tail = *prev
	}
	*prev, *next = nil, nil
}

func newHandshakeGuard(max, perSource int, budget int64) *handshakeGuard {
	return &handshakeGuard{max: max, perSource: perSource, budget: budget, sources: make(map[netip.Addr]*shakeSource)}
}

// sourceKey is the address a per-source limit counts: IPv4 as it is, IPv6
// by its /64.
func sourceKey(a netip.Addr) netip.Addr {
	if !a.IsValid() {
		return a
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// admit takes a slot for c, evicting where the limits say so. An
// evictable handshake starts waiting for its ClientHello; one that is not
// (client mode, where the accepted side is plaintext) counts as answered
// from the start. It returns the new handshake and the victims to close,
// or the reason for refusing c.
func (g *handshakeGuard) admit(c *conn, src netip.Addr, evictable bool) (*shake, []*shake, Limit) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var victims []*shake
	s := &shake{c: c, src: sourceKey(src)}
	var from *shakeSource
	if g.perSource > 0 && s.src.IsValid() {
		from = g.sources[s.src]
		if from != nil && from.n >= g.perSource {
			v := from.waiting.head
			if v == nil {
				return nil, nil, LimitHandshakesPerSource
			}
			g.evict(v, LimitHandshakesPerSource)
			victims = append(victims, v)
		}
	}
	if g.max > 0 && g.n >= g.max {
		// A per-source eviction above freed a slot, so this cannot undo it.
		v := g.waiting.head
		if v == nil {
			return nil, nil, LimitHandshakes
		}
		g.evict(v, LimitHandshakes)
		victims = append(victims, v)
	}
	g.n++
	if s.src.IsValid() {
		if from = g.sources[s.src]; from == nil {
			from = &shakeSource{waiting: shakeList{bySource: true}}
			g.sources[s.src] = from
		}
		from.n++
	}
	if evictable {
		g.waiting.push(s)
		if from != nil {
			from.waiting.push(s)
		}
	} else {
		s.answered = true
		g.answered.push(s)
	}
	return s, victims, 0
}

// answer records that s's ClientHello was answered: it can no longer be
// evicted for a newcomer, only cut for memory or by its deadline.
func (g *handshakeGuard) answer(s *shake) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s.gone || s.answered {
		return
	}
	g.waiting.remove(s)
	if src := g.sources[s.src]; src != nil && s.src.IsValid() {
		src.waiting.remove(s)
	}
	s.answered = true
	g.answered.push(s)
}

// charge adds n bytes to what s holds and returns the handshakes to cut
// to stay within the budget: the oldest first, answered ones before
// waiting ones. s itself may be among them.
func (g *handshakeGuard) charge(s *shake, n int64) []*shake {
	g.mu.Lock()
	defer g.mu.Unlock()
	if s.gone {
		return nil
	}
	s.held += n
	g.held += n
	var victims []*shake
	for g.budget > 0 && g.held > g.budget {
		v := g.answered.head
		if v == nil {
			v = g.waiting.head
		}
		if v == nil {
			break
		}
		g.evict(v, LimitHandshakeMemory)
		victims = append(victims, v)
	}
	return victims
}

// leave takes s out of the guard: its handshake finished or its
// connection closed. Leaving twice, or after an eviction, does nothing.
func (g *handshakeGuard) leave(s *shake) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !s.gone {
		g.drop(s)
	}
}

func (g *handshakeGuard) evict(s *shake, why Limit) {
	g.drop(s)
	s.evicted = why
}

// drop unlinks s and gives back what it counted.
func (g *handshakeGuard) drop(s *shake) {
	s.gone = true
	g.n--
	g.held -= s.held
	if s.answered {
		g.answered.remove(s)
	} else {
		g.waiting.remove(s)
	}
	if !s.src.IsValid() {
		return
	}
	src := g.sources[s.src]
	if src == nil {
		return
	}
	if !s.answered {
		src.waiting.remove(s)
	}
	if src.n--; src.n == 0 {
		delete(g.sources, s.src)
	}
}

// inFlight returns the handshakes in flight and the bytes they hold.
func (g *handshakeGuard) inFlight() (int, int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n, g.held
}

// setSource charges s, admitted before its source was known (a connection
// whose PROXY protocol header was still to come), to src from now on,
// evicting for the per-source limit as admit does. It returns the victims
// to close, or the limit that refuses s when that source has no one to
// evict; s is then still in the guard, and leaves when its connection
// ends.
func (g *handshakeGuard) setSource(s *shake, src netip.Addr) ([]*shake, Limit) {
	key := sourceKey(src)
	g.mu.Lock()
	defer g.mu.Unlock()
	if s.gone || s.src.IsValid() || !key.IsValid() {
		return nil, 0
	}
	var victims []*shake
	if from := g.sources[key]; g.perSource > 0 && from != nil && from.n >= g.perSource {
		v := from.waiting.head
		if v == nil {
			return nil, LimitHandshakesPerSource
		}
		g.evict(v, LimitHandshakesPerSource)
		victims = append(victims, v)
	}
	from := g.sources[key]
	if from == nil {
		from = &shakeSource{waiting: shakeList{bySource: true}}
		g.sources[key] = from
	}
	from.n++
	s.src = key
	if !s.answered {
		from.waiting.push(s)
	}
	return victims, 0
}
