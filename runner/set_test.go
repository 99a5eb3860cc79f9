package runner

import (
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReplacedServiceKeepsItsConnectionsUntilTheyEnd: Replace serves the
// new server and stops the old one accepting; the old one's open
// connections are not cut by any timeout, and its Serve returning does not
// end Run.
func TestReplacedServiceKeepsItsConnectionsUntilTheyEnd(t *testing.T) {
	old, repl := newFakeServer(1), newFakeServer(0)
	h := start(t, Options{Services: []Service{{Name: "web", Server: old}}, ShutdownTimeout: time.Minute})
	if err := h.r.Replace(Service{Name: "web", Server: repl}); err != nil {
		t.Fatal(err)
	}
	received(t, "the old server's Shutdown", old.shutdowns)
	if got, _ := h.r.Service("web"); got.Server != repl {
		t.Fatal("the set does not hold the new server")
	}
	h.stillRunning(t, 200*time.Millisecond)
	if old.Active() != 1 {
		t.Fatal("the old server's connection was cut")
	}
	if !h.r.Ready() {
		t.Error("not ready while the new server serves")
	}
	close(old.finish)
	waitFor(t, "the replaced server to drain", func() bool { return h.r.active() == 0 })
	h.stillRunning(t, 100*time.Millisecond)
	h.sigs <- syscall.SIGTERM
	if err := h.result(t, 2*time.Second); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	h.logged(t, "service replaced: stopped accepting", "service replaced: drained")
}

// TestRemovedServiceDrainsUnderItsTimeout: Remove stops the service
// accepting and resets what is still open after the timeout given.
func TestRemovedServiceDrainsUnderItsTimeout(t *testing.T) {
	keep, gone := newFakeServer(0), newFakeServer(1)
	h := start(t, Options{Services: []Service{{Name: "keep", Server: keep}, {Name: "gone", Server: gone}}, ShutdownTimeout: time.Minute})
	if err := h.r.Remove("gone", 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	received(t, "the removed server's Shutdown", gone.shutdowns)
	waitFor(t, "the removed server to be cut", func() bool {
		return strings.Contains(h.log.String(), "service removed: shutdown timeout reached")
	})
	if _, ok := h.r.Service("gone"); ok {
		t.Error("the removed service is still in the set")
	}
	h.stillRunning(t, 100*time.Millisecond)
	if err := h.r.Remove("gone", time.Second); err == nil {
		t.Error("removing it twice was accepted")
	}
	h.sigs <- syscall.SIGTERM
	if err := h.result(t, 2*time.Second); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
}

// TestAddedServiceServesAndJoinsTheShutdown: a service added while Run runs
// is served, counts for readiness, and is drained by the shutdown.
func TestAddedServiceServesAndJoinsTheShutdown(t *testing.T) {
	first, added := newFakeServer(0), newFakeServer(0)
	certs := &fakeCertificates{watched: make(chan struct{})}
	h := start(t, Options{Services: []Service{{Name: "first", Server: first}}, ShutdownTimeout: time.Minute})
	if err := h.r.Add(Service{Name: "added", Server: added, Certificates: certs}); err != nil {
		t.Fatal(err)
	}
	if err := h.r.Add(Service{Name: "added", Server: newFakeServer(0)}); err == nil {
		t.Error("a second service of the same name was accepted")
	}
	h.sigs <- syscall.SIGHUP
	waitFor(t, "the added service's certificates to reload", func() bool { return certs.reloads.Load() == 1 })
	h.sigs <- syscall.SIGTERM
	received(t, "the added server's Shutdown", added.shutdowns)
	if err := h.result(t, 2*time.Second); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	received(t, "the certificate watch to end", certs.watched)
	if err := h.r.Add(Service{Name: "late", Server: newFakeServer(0)}); !errors.Is(err, ErrStopping) {
		t.Errorf("Add after the shutdown = %v, want ErrStopping", err)
	}
}

// TestShutdownCutsReplacedServersAtItsDeadline: a replaced server still
// draining when the process shuts down gets the same timeout as the live
// ones, and a cut there makes Run fail like theirs.
func TestShutdownCutsReplacedServersAtItsDeadline(t *testing.T) {
	old := newFakeServer(1)
	h := start(t, Options{Services: []Service{{Name: "web", Server: old}}, ShutdownTimeout: 100 * time.Millisecond})
	if err := h.r.Replace(Service{Name: "web", Server: newFakeServer(0)}); err != nil {
		t.Fatal(err)
	}
	received(t, "the old server's Shutdown", old.shutdowns)
	h.sigs <- syscall.SIGTERM
	err := h.result(t, 2*time.Second)
	var cut *CutError
	if !errors.As(err, &cut) {
		t.Fatalf("Run = %v, want a *CutError", err)
	}
}

// TestReconfigureRunsOnSIGHUP: the reconfigure hook runs on SIGHUP before
// the certificates reload.
func TestReconfigureRunsOnSIGHUP(t *testing.T) {
	certs := &fakeCertificates{watched: make(chan struct{})}
	order := make(chan string, 4)
	h := start(t, Options{Services: []Service{{Name: "a", Server: newFakeServer(0), Certificates: certs,
		OnReload: func(error) {
			if certs.reloads.Load() > 0 {
				order <- "certificates"
			}
		}}},
		Reconfigure: func() { order <- "reconfigure" }, ShutdownTimeout: time.Second})
	h.sigs <- syscall.SIGHUP
	if first := received(t, "the reconfigure", order); first != "reconfigure" {
		t.Errorf("first on SIGHUP: %s, want reconfigure", first)
	}
	if second := received(t, "the certificate reload", order); second != "certificates" {
		t.Errorf("second on SIGHUP: %s, want certificates", second)
	}
	h.sigs <- syscall.SIGTERM
	h.result(t, 2*time.Second)
}
