package runner

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// listenNotify is a datagram socket standing in for systemd's, set as
// NOTIFY_SOCKET for the test; messages arrive on the channel.
func listenNotify(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	msgs := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return msgs
}

// nextState returns the next message's first line, skipping watchdog
// pings unless that is what is wanted.
func nextState(t *testing.T, msgs <-chan string, want string) string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case m := <-msgs:
			first, _, _ := strings.Cut(m, "\n")
			if first == "WATCHDOG=1" && want != first {
				continue
			}
			if first != want {
				t.Fatalf("notified %q, want %s next", m, want)
			}
			return m
		case <-deadline:
			t.Fatalf("no %s within 5s", want)
		}
	}
}

// TestNotifyFollowsTheLifecycle: READY=1 after start, RELOADING=1 with
// MONOTONIC_USEC then READY=1 around a SIGHUP, STOPPING=1 at SIGTERM, in
// that order, and WATCHDOG=1 pings with WATCHDOG_USEC.
func TestNotifyFollowsTheLifecycle(t *testing.T) {
	msgs := listenNotify(t)
	t.Setenv("WATCHDOG_USEC", "100000")
	t.Setenv("WATCHDOG_PID", "")
	srv := newFakeServer(0)
	h := start(t, Options{Services: []Service{{Server: srv}}, ShutdownTimeout: time.Second, Notify: true})
	nextState(t, msgs, "READY=1")
	nextState(t, msgs, "WATCHDOG=1")
	nextState(t, msgs, "WATCHDOG=1")
	h.sigs <- syscall.SIGHUP
	if m := nextState(t, msgs, "RELOADING=1"); !strings.Contains(m, "\nMONOTONIC_USEC=") {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", m)
	}
	nextState(t, msgs, "READY=1")
	h.sigs <- syscall.SIGTERM
	nextState(t, msgs, "STOPPING=1")
	if err := h.result(t, 3*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestNotifyOffSendsNothing: without Options.Notify the runner stays quiet
// even when NOTIFY_SOCKET is set (a test binary run under systemd).
func TestNotifyOffSendsNothing(t *testing.T) {
	msgs := listenNotify(t)
	srv := newFakeServer(0)
	h := start(t, Options{Services: []Service{{Server: srv}}, ShutdownTimeout: time.Second})
	h.sigs <- syscall.SIGHUP
	h.sigs <- syscall.SIGTERM
	if err := h.result(t, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-msgs:
		t.Fatalf("notified %q with Notify off", m)
	case <-time.After(100 * time.Millisecond):
	}
}

// stallingServer is a fake server whose event loops can be made to stop
// answering.
type stallingServer struct {
	*fakeServer
	stalled atomic.Bool
}

func (s *stallingServer) Alive(ctx context.Context) bool {
	if s.stalled.Load() {
		<-ctx.Done()
		return false
	}
	return true
}

// TestWatchdogStopsWhileAServiceIsStuck: WATCHDOG=1 pings stop while a
// service's loops do not answer, and resume when they do.
func TestWatchdogStopsWhileAServiceIsStuck(t *testing.T) {
	msgs := listenNotify(t)
	t.Setenv("WATCHDOG_USEC", "100000")
	t.Setenv("WATCHDOG_PID", "")
	srv := &stallingServer{fakeServer: newFakeServer(0)}
	h := start(t, Options{Services: []Service{{Server: srv}}, ShutdownTimeout: time.Second, Notify: true})
	nextState(t, msgs, "READY=1")
	nextState(t, msgs, "WATCHDOG=1")
	srv.stalled.Store(true)
	// Drain a ping that may have been in flight, then expect silence.
	quiet := time.After(150 * time.Millisecond)
drain:
	for {
		select {
		case <-msgs:
		case <-quiet:
			break drain
		}
	}
	select {
	case m := <-msgs:
		t.Fatalf("notified %q while the service was stuck", m)
	case <-time.After(500 * time.Millisecond):
	}
	srv.stalled.Store(false)
	nextState(t, msgs, "WATCHDOG=1")
	h.logged(t, "an event loop did not answer; not pinging the systemd watchdog", "event loops answer again")
	h.sigs <- syscall.SIGTERM
	if err := h.result(t, 3*time.Second); err != nil {
		t.Fatal(err)
	}
}
