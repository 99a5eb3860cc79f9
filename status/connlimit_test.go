package status

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// probe is a kubelet-like GET: one request per connection.
func probe(t *testing.T, s *Server, path string) int {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + s.Addr().String() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// halfHeader connects and sends the start of a request whose header never
// ends.
func halfHeader(t *testing.T, s *Server) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: moat\r\nX-Slow: "+strings.Repeat("s", 2000)); err != nil {
		t.Fatal(err)
	}
	return c
}

// closedByServer reports whether the server has closed c, waiting up to d.
func closedByServer(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !isTimeout(err)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestConnCapEvictsHalfHeadersForAProbe: with the cap held by connections
// that never finish their header, a probe is still answered, by closing
// the waiters that sent the most; the server never holds more than the cap.
func TestConnCapEvictsHalfHeadersForAProbe(t *testing.T) {
	const max = 4
	s := start(t, Config{MaxConns: max})
	var slow []net.Conn
	for range 10 {
		slow = append(slow, halfHeader(t, s))
	}
	if code := probe(t, s, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz beside %d half headers = %d, want 200", len(slow), code)
	}
	closed := 0
	for _, c := range slow {
		if closedByServer(c, 200*time.Millisecond) {
			closed++
		}
	}
	// 10 half headers and a probe through 4 slots: at least 7 were closed.
	if closed < len(slow)+1-max {
		t.Errorf("%d of %d half headers closed, want at least %d", closed, len(slow), len(slow)+1-max)
	}
	s.limit.mu.Lock()
	open := s.limit.open
	s.limit.mu.Unlock()
	if open > max {
		t.Errorf("%d connections counted open, more than the cap of %d", open, max)
	}
	if n := s.limit.evicted.Load(); n < int64(len(slow)+1-max) {
		t.Errorf("evicted = %d, want at least %d", n, len(slow)+1-max)
	}
}

// TestConnCapRefusesWhenEveryConnectionIsServed: requests inside a handler
// are never evicted; a connection beyond the cap is then closed at once,
// not queued, and the served requests complete.
func TestConnCapRefusesWhenEveryConnectionIsServed(t *testing.T) {
	const max = 2
	entered := make(chan struct{}, max)
	release := make(chan struct{})
	s := start(t, Config{MaxConns: max, CheckUpstream: func(context.Context) error {
		entered <- struct{}{}
		<-release
		return nil
	}})
	codes := make(chan int, max)
	for range max {
		go func() {
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			resp, err := c.Get("http://" + s.Addr().String() + "/readyz")
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	for range max {
		<-entered
	}
	extra, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	io.WriteString(extra, "GET /healthz HTTP/1.1\r\nHost: moat\r\n\r\n")
	if !closedByServer(extra, 5*time.Second) {
		t.Fatal("a connection beyond the cap, with every slot in a handler, was not closed")
	}
	if n := s.limit.refused.Load(); n != 1 {
		t.Errorf("refused = %d, want 1", n)
	}
	close(release)
	for range max {
		if code := <-codes; code != http.StatusOK {
			t.Errorf("a /readyz served at the cap = %d, want 200", code)
		}
	}
	if n := s.limit.evicted.Load(); n != 0 {
		t.Errorf("evicted = %d, want 0: connections in a handler are not evictable", n)
	}
}

// TestOversizeHeaderIsRefusedWith431: 8 KiB of header is the most a peer
// may send; net/http's 1 MiB default is what let a flood exhaust memory.
func TestOversizeHeaderIsRefusedWith431(t *testing.T) {
	s := start(t, Config{})
	for _, tc := range []struct {
		size int
		want int
	}{{1 << 10, http.StatusOK}, {16 << 10, http.StatusRequestHeaderFieldsTooLarge}} {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: moat\r\nX-Pad: "+strings.Repeat("p", tc.size)+"\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%d-byte header: %v", tc.size, err)
		}
		resp.Body.Close()
		c.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%d-byte header: %s, want %d", tc.size, resp.Status, tc.want)
		}
	}
}

// TestVictimIsTheBiggestSenderPastItsGrace decides evictions from fixed
// times and byte counts, without sockets.
func TestVictimIsTheBiggestSenderPastItsGrace(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const grace = 100 * time.Millisecond
	type waiter struct {
		age     time.Duration // how long it has waited at t0
		pending int64
	}
	for _, tc := range []struct {
		name    string
		waiters []waiter // in order of arrival
		victim  int      // index, or -1 for none
		wait    time.Duration
	}{
		{"none waiting", nil, -1, 0},
		{"all within grace", []waiter{{90 * time.Millisecond, 5000}, {10 * time.Millisecond, 0}}, -1, 10 * time.Millisecond},
		{"oldest of equals", []waiter{{300 * time.Millisecond, 0}, {200 * time.Millisecond, 0}}, 0, 0},
		{"most bytes first", []waiter{{300 * time.Millisecond, 10}, {200 * time.Millisecond, 9000}, {150 * time.Millisecond, 40}}, 1, 0},
		{"bytes within grace do not count", []waiter{{300 * time.Millisecond, 10}, {50 * time.Millisecond, 9000}}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newConnLimit(nil, len(tc.waiters), grace)
			var conns []*limitedConn
			for _, w := range tc.waiters {
				lc := &limitedConn{limit: l, counted: true}
				l.waitLocked(lc, t0.Add(-w.age))
				lc.pending.Store(w.pending)
				conns = append(conns, lc)
			}
			victim, wait := l.victimLocked(t0)
			switch {
			case tc.victim < 0 && victim != nil:
				t.Errorf("victim = waiter %d, want none", indexOf(conns, victim))
			case tc.victim >= 0 && victim != conns[tc.victim]:
				t.Errorf("victim = waiter %d, want %d", indexOf(conns, victim), tc.victim)
			}
			if wait != tc.wait {
				t.Errorf("wait = %s, want %s", wait, tc.wait)
			}
		})
	}
}

func indexOf(conns []*limitedConn, c *limitedConn) int {
	for i, x := range conns {
		if x == c {
			return i
		}
	}
	return -1
}
