package proxy

import (
	"net/netip"
	"testing"
)

func TestHandshakeGuardEvictsOldestWaitingPerSourceThenCap(t *testing.T) {
	g := newHandshakeGuard(4, 2, 0)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	a1, _, _ := g.admit(&conn{}, a, true)
	a2, _, _ := g.admit(&conn{}, a, true)
	// A third from a evicts a's oldest waiting one.
	a3, victims, refused := g.admit(&conn{}, a, true)
	if refused != 0 || len(victims) != 1 || victims[0] != a1 || a1.evicted != LimitHandshakesPerSource {
		t.Fatalf("third from a: victims %v refused %v", victims, refused)
	}
	g.answer(a2)
	g.answer(a3)
	// a's two are answered: a newcomer from a is refused, not let in.
	if _, _, refused := g.admit(&conn{}, a, true); refused != LimitHandshakesPerSource {
		t.Fatalf("a newcomer from a source whose handshakes were all answered: refused %v", refused)
	}
	b1, _, _ := g.admit(&conn{}, b, true)
	b2, _, _ := g.admit(&conn{}, b, true)
	// The cap of 4 is full (a2, a3 answered; b1, b2 waiting): a newcomer
	// from a third source evicts the oldest waiting one, b1.
	_, victims, _ = g.admit(&conn{}, netip.MustParseAddr("2001:db8::1"), true)
	if len(victims) != 1 || victims[0] != b1 || b1.evicted != LimitHandshakes {
		t.Fatalf("over the cap: victims %v, want b1", victims)
	}
	g.leave(b1) // its connection closes after the eviction: nothing more
	g.leave(b2)
	if n, _ := g.inFlight(); n != 3 {
		t.Fatalf("%d in flight, want 3", n)
	}
	// The same IPv6 /64 is one source.
	g6 := newHandshakeGuard(0, 1, 0)
	g6.admit(&conn{}, netip.MustParseAddr("2001:db8::1"), true)
	if _, victims, _ := g6.admit(&conn{}, netip.MustParseAddr("2001:db8::ffff"), true); len(victims) != 1 {
		t.Fatal("two addresses of one IPv6 /64 counted as two sources")
	}
}

func TestHandshakeGuardMemoryBudgetCutsOldestAnsweredFirst(t *testing.T) {
	g := newHandshakeGuard(0, 0, 1000)
	src := netip.MustParseAddr("192.0.2.1")
	w, _, _ := g.admit(&conn{}, src, true)
	x, _, _ := g.admit(&conn{}, src, true)
	y, _, _ := g.admit(&conn{}, src, true)
	g.answer(x)
	g.answer(y)
	if v := g.charge(w, 400); len(v) != 0 {
		t.Fatalf("within budget: cut %v", v)
	}
	if v := g.charge(y, 500); len(v) != 0 {
		t.Fatalf("within budget: cut %v", v)
	}
	// Over: the oldest answered (x, holding nothing) goes first, then y.
	v := g.charge(x, 200)
	if len(v) != 1 || v[0] != x {
		t.Fatalf("over budget: cut %v, want x", v)
	}
	if _, held := g.inFlight(); held != 900 {
		t.Fatalf("held %d after the cut, want 900", held)
	}
	v = g.charge(w, 200)
	if len(v) != 1 || v[0] != y || y.evicted != LimitHandshakeMemory {
		t.Fatalf("over budget again: cut %v, want y", v)
	}
	if n, held := g.inFlight(); n != 1 || held != 600 {
		t.Fatalf("in flight %d holding %d, want 1 and 600", n, held)
	}
}

func TestHandshakeGuardClientModeRefusesAtCap(t *testing.T) {
	g := newHandshakeGuard(1, 0, 0)
	g.admit(&conn{}, netip.Addr{}, false)
	if _, victims, refused := g.admit(&conn{}, netip.Addr{}, false); refused != LimitHandshakes || len(victims) != 0 {
		t.Fatalf("client mode over the cap: victims %v refused %v, want a refusal", victims, refused)
	}
}
