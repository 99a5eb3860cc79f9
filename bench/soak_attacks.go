package main

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// attack is one kind of hostile client. It runs as slots: each slot holds
// one connection at a time, plays the attacker's part on it, waits for the
// connection to end, and opens the next one — so the attack keeps its
// intensity however fast moat closes what it sends.
type attack struct {
	name   string // as in -attacks
	slots  int
	status bool // aims at the status port rather than the TLS port
	// source is the local address slot dials from. Attacks spread over many
	// loopback addresses unless being one address is the point.
	source func(slot int) net.IP
	// play is the attacker's part; it returns when the connection is over.
	play  func(ctx context.Context, e *soakEnv, slot int, c net.Conn, st *attackStats)
	pause time.Duration // before a slot reopens after its connection ended
}

// attackCounts is what the report shows of one attack.
type attackCounts struct {
	Slots       int              `json:"slots"`
	Opened      int64            `json:"opened"`
	DialFailed  int64            `json:"dial_failed"`
	ClosedFast  int64            `json:"closed_within_1s"`
	ClosedLater int64            `json:"closed_after_1s"`
	MaxOpen     int64            `json:"max_open"`
	OpenAtEnd   int64            `json:"open_at_end"`
	Outcomes    map[string]int64 `json:"outcomes,omitempty"`
}

// attackStats counts one attack's connections; its slots update it at once.
type attackStats struct {
	slots                                                      int
	opened, dialFailed, closedFast, closedLater, open, maxOpen atomic.Int64

	mu       sync.Mutex
	outcomes map[string]int64
}

// outcome counts one attack-specific result ("alert", "HTTP 431", ...).
func (s *attackStats) outcome(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.outcomes == nil {
		s.outcomes = map[string]int64{}
	}
	s.outcomes[name]++
}

func (s *attackStats) enter() {
	n := s.open.Add(1)
	for m := s.maxOpen.Load(); n > m && !s.maxOpen.CompareAndSwap(m, n); m = s.maxOpen.Load() {
	}
}

// snapshot copies the counters into the exported fields for the report.
func (s *attackStats) snapshot() attackCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := attackCounts{Slots: s.slots, Opened: s.opened.Load(), DialFailed: s.dialFailed.Load(),
		ClosedFast: s.closedFast.Load(), ClosedLater: s.closedLater.Load(), MaxOpen: s.maxOpen.Load(),
		OpenAtEnd: s.open.Load(), Outcomes: map[string]int64{}}
	for k, v := range s.outcomes {
		out.Outcomes[k] = v
	}
	return out
}

// runAttack runs a's slots until ctx ends and waits for them.
func runAttack(ctx context.Context, e *soakEnv, a *attack, st *attackStats) {
	st.slots = a.slots
	var wg sync.WaitGroup
	for slot := range a.slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runSlot(ctx, e, a, slot, st)
		}()
	}
	wg.Wait()
}

// runSlot is one slot's loop. A connection still open when ctx ends was
// held to the end and counts as neither kind of close.
func runSlot(ctx context.Context, e *soakEnv, a *attack, slot int, st *attackStats) {
	addr := e.tlsAddr
	if a.status {
		addr = e.statusAddr
	}
	for ctx.Err() == nil {
		c, err := e.dial(ctx, a.source(slot), addr)
		if err != nil {
			if ctx.Err() == nil {
				st.dialFailed.Add(1)
				st.outcome("dial: " + errorClass(err))
			}
			sleepCtx(ctx, 200*time.Millisecond)
			continue
		}
		st.opened.Add(1)
		st.enter()
		stop := context.AfterFunc(ctx, func() { c.Close() })
		start := time.Now()
		a.play(ctx, e, slot, c, st)
		stop()
		c.Close()
		st.open.Add(-1)
		if ctx.Err() != nil {
			st.open.Add(1) // held until the end
			return
		}
		if time.Since(start) < time.Second {
			st.closedFast.Add(1)
		} else {
			st.closedLater.Add(1)
		}
		sleepCtx(ctx, a.pause)
	}
}

// dial connects from src to addr, at most dialSlots dials at a time across
// every attack, so the tool's own CPU stays modest during the opening ramp.
func (e *soakEnv) dial(ctx context.Context, src net.IP, addr string) (net.Conn, error) {
	select {
	case e.dialSem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-e.dialSem }()
	d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: src}}
	return d.DialContext(ctx, "tcp", addr)
}

// dialSlots bounds concurrent attack dials.
const dialSlots = 64

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// loopback returns a source address in 127.b.x.y for slot: attacks that
// spread their connections use 250 addresses each; b tells the attacks
// apart in moat's logs. The legitimate client uses 127.0.0.1.
func loopback(b byte) func(slot int) net.IP {
	return func(slot int) net.IP { return net.IPv4(127, b, byte(slot/250%250), byte(1+slot%250)) }
}

// oneAddress is the single source of the handshake-cap fill.
func oneAddress(ip net.IP) func(int) net.IP { return func(int) net.IP { return ip } }

// waitClosed reads and discards until the peer (or ctx) ends the connection.
func waitClosed(c net.Conn) {
	var buf [512]byte
	for {
		if _, err := c.Read(buf[:]); err != nil {
			return
		}
	}
}

// errorClass names an error for the outcome counters without its addresses.
func errorClass(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "closed"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no local port"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Op + ": " + firstLine(oe.Err.Error())
	}
	return firstLine(err.Error())
}
