package proxy

import (
	"context"
	"testing"
	"time"
)

// TestAliveUntilALoopIsStuck: a serving server's loops all answer; one
// loop held in a long task makes Alive false within its deadline, and true
// again once the task returns.
func TestAliveUntilALoopIsStuck(t *testing.T) {
	srv, _ := startServer(t, "127.0.0.1:9", func(c *Config) { c.Loops = 2 })
	ask := func(d time.Duration) bool {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		return srv.Alive(ctx)
	}
	if !ask(10 * time.Second) {
		t.Fatal("a serving server is not alive")
	}
	release := make(chan struct{})
	stuck := make(chan struct{})
	srv.loops[1].post(func() { close(stuck); <-release })
	<-stuck
	if ask(200 * time.Millisecond) {
		t.Fatal("alive with a loop stuck in a task")
	}
	close(release)
	if !ask(10 * time.Second) {
		t.Fatal("not alive after the stuck task returned")
	}
}
