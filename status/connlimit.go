package status

import (
	"container/list"
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// connLimit is a listener that holds at most max connections open. When a
// connection arrives at the cap, it makes room by closing one that is
// waiting for a request (still sending its header, or idle between
// requests); if every connection is inside a handler, it closes the new one
// instead. Nothing queues: the excess costs a close, not a goroutine.
//
// The connection evicted is the one that has sent the most bytes without
// completing a request, and of those the one that has waited longest; but
// none is evicted within grace of its accept (or of its last answer): while
// every waiter is that young, Accept waits, and new connections stay in
// the kernel's queue. Evicting a waiter rather than refusing the newcomer
// keeps probes answered under a flood of slow or oversized headers: a
// kubelet sends its whole request in one packet and is inside a handler a
// moment after accept, while the flood's connections sit waiting, half a
// header in, and are the first to go. The grace is that moment, kept even
// when the flood makes moat slow to read, and it bounds how fast a flood
// can cycle through the slots.
//
// The http.Server must use serving, connContext and track, so that
// connections inside a handler are never evicted.
type connLimit struct {
	net.Listener
	max   int
	grace time.Duration // a waiter is not evicted sooner than this

	mu      sync.Mutex
	open    int
	waiting list.List // of *limitedConn, longest waiting first

	evicted atomic.Int64 // waiting connections closed to make room
	refused atomic.Int64 // new connections closed because none could be
}

func newConnLimit(ln net.Listener, max int, grace time.Duration) *connLimit {
	return &connLimit{Listener: ln, max: max, grace: grace}
}

// Accept returns the next connection, making room for it first if the cap
// is reached.
func (l *connLimit) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		for {
			lc, wait := l.admit(c, time.Now())
			if lc != nil {
				return lc, nil
			}
			if wait == 0 {
				break
			}
			// Every waiter is within its grace: later connections stay in
			// the kernel's accept queue meanwhile, costing moat nothing.
			time.Sleep(wait)
		}
		c.Close()
		l.refused.Add(1)
	}
}

// admit counts c in, evicting a waiter if need be. It returns nil and how
// long to wait when every waiter is still within its grace, and nil and 0
// when no connection is waiting at all.
func (l *connLimit) admit(c net.Conn, now time.Time) (*limitedConn, time.Duration) {
	l.mu.Lock()
	var victim *limitedConn
	if l.open >= l.max {
		var wait time.Duration
		if victim, wait = l.victimLocked(now); victim == nil {
			l.mu.Unlock()
			return nil, wait
		}
		l.unwaitLocked(victim)
		victim.counted = false // its own Close will not count it again
		l.open--
	}
	lc := &limitedConn{Conn: c, limit: l, counted: true}
	l.open++
	l.waitLocked(lc, now)
	l.mu.Unlock()
	if victim != nil {
		victim.Conn.Close()
		l.evicted.Add(1)
	}
	return lc, 0
}

// victimLocked picks the waiter to evict among those past their grace:
// the one that has sent the most bytes towards a request not yet in a
// handler, then the one waiting longest. When none is past its grace it
// returns how long until the first will be. The scan is over at most max
// connections.
func (l *connLimit) victimLocked(now time.Time) (*limitedConn, time.Duration) {
	front := l.waiting.Front()
	if front == nil {
		return nil, 0
	}
	var victim *limitedConn
	for e := front; e != nil; e = e.Next() {
		lc := e.Value.(*limitedConn)
		if now.Sub(lc.since) < l.grace {
			break // the list is in order of since
		}
		if victim == nil || lc.pending.Load() > victim.pending.Load() {
			victim = lc
		}
	}
	if victim == nil {
		return nil, front.Value.(*limitedConn).since.Add(l.grace).Sub(now)
	}
	return victim, 0
}

// serving wraps the server's handler: a connection whose request is in a
// handler is not evictable. It becomes evictable again when net/http reports
// it idle, after the answer is flushed. A request net/http refuses before
// any handler (a header too large, a header too slow) never stops being
// evictable.
func (l *connLimit) serving(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if lc, ok := r.Context().Value(connKey{}).(*limitedConn); ok {
			l.mu.Lock()
			l.unwaitLocked(lc)
			l.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
}

// connKey keys the request context's *limitedConn.
type connKey struct{}

// connContext is the http.Server's ConnContext hook, so that serving can
// find a request's connection.
func (l *connLimit) connContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// track is the http.Server's ConnState hook: an idle connection waits for
// its next request, and may be evicted.
func (l *connLimit) track(c net.Conn, state http.ConnState) {
	lc, ok := c.(*limitedConn)
	if !ok || state != http.StateIdle {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if lc.counted && lc.waiting == nil {
		l.waitLocked(lc, time.Now())
	}
}

// waitLocked puts lc at the end of the waiting list.
func (l *connLimit) waitLocked(lc *limitedConn, now time.Time) {
	lc.pending.Store(0)
	lc.since = now
	lc.waiting = l.waiting.PushBack(lc)
}

func (l *connLimit) unwaitLocked(lc *limitedConn) {
	if lc.waiting != nil {
		l.waiting.Remove(lc.waiting)
		lc.waiting = nil
	}
}

// release uncounts lc, once.
func (l *connLimit) release(lc *limitedConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unwaitLocked(lc)
	if lc.counted {
		lc.counted = false
		l.open--
	}
}

// limitedConn is a connection counted against a connLimit; counted and
// waiting belong to the limit's mutex.
type limitedConn struct {
	net.Conn
	limit   *connLimit
	counted bool          // holds one of the limit's slots
	waiting *list.Element // in limit.waiting; nil from handler entry until idle
	since   time.Time     // when it last began waiting
	pending atomic.Int64  // bytes read since it last began waiting
}

// Read counts what the peer sends towards its next request.
func (c *limitedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.pending.Add(int64(n))
	return n, err
}

// Close closes the connection and frees its slot.
func (c *limitedConn) Close() error {
	c.limit.release(c)
	return c.Conn.Close()
}
