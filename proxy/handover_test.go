package proxy

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/moat-proxy/moat/endpoint"
)

func roundTrip(t *testing.T, c net.Conn, line string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		t.Fatal(err)
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != line+"\n" {
		t.Fatalf("echo of %q: %q, %v", line, got, err)
	}
}

// TestHandOverKeepsTheAddressAndTheOpenConnections: a server built on the
// socket another hands over serves the same address with its own target,
// while the old one's open connection keeps its upstream until it ends.
func TestHandOverKeepsTheAddressAndTheOpenConnections(t *testing.T) {
	first := startUpstream(t, "tcp", "127.0.0.1:0", echo)
	second := startUpstream(t, "tcp", "127.0.0.1:0", echo)
	old, client := startServer(t, first.addr(), nil)
	held := dialTLS(t, old, client)
	roundTrip(t, held, "before")

	h, err := old.HandOver()
	if err != nil {
		t.Fatal(err)
	}
	tgt, _ := endpoint.ParseTarget(second.addr())
	cfg := old.cfg
	cfg.Target, cfg.Inherit = endpoint.NewResolver(tgt), h
	repl, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	startServing(t, repl)
	if repl.Addr().String() != old.Addr().String() {
		t.Fatalf("the new server listens on %s, want %s", repl.Addr(), old.Addr())
	}
	shutdown := make(chan error, 1)
	go func() { shutdown <- old.Shutdown(context.Background()) }()
	eventually(t, 5*time.Second, "the old server to stop accepting", old.Draining)

	for i := range 5 {
		c := dialTLS(t, repl, client)
		roundTrip(t, c, "after")
		c.Close()
		if got := second.accepted.Load(); got != int64(i+1) {
			t.Fatalf("the new target saw %d connections, want %d", got, i+1)
		}
	}
	roundTrip(t, held, "still the old settings")
	if first.accepted.Load() != 1 {
		t.Fatalf("the old target saw %d connections, want the held one", first.accepted.Load())
	}
	held.Close()
	select {
	case err := <-shutdown:
		if err != nil {
			t.Fatalf("the old server's drain: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the old server did not drain after its connection ended")
	}
}

// TestHandOverLeavesTheUnixSocketFile: the old server's close must not
// remove a unix socket file the new server now serves, and a discarded
// server built on a handover leaves it too.
func TestHandOverLeavesTheUnixSocketFile(t *testing.T) {
	up := startUpstream(t, "tcp", "127.0.0.1:0", echo)
	path := filepath.Join(t.TempDir(), "moat.sock")
	listen, _ := endpoint.ParseListen("unix:" + path)
	old, _ := startServer(t, up.addr(), func(c *Config) { c.Listen = listen })
	h, err := old.HandOver()
	if err != nil {
		t.Fatal(err)
	}
	cfg := old.cfg
	cfg.Inherit = h
	discarded, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	discarded.Discard()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("a discarded server removed the socket file: %v", err)
	}
	h, err = old.HandOver()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Inherit = h
	repl, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	startServing(t, repl)
	if err := old.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the old server removed the socket file the new one serves: %v", err)
	}
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		t.Fatalf("the new server does not accept on the socket: %v", err)
	}
	c.Close()
}
