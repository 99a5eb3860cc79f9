package proxy

import "context"

// Alive reports whether every event loop runs a task posted to it before
// ctx ends. A loop stuck in a long call holds up all of its connections;
// a service manager's watchdog asks this so that it stops being told the
// process is well. A loop that has exited (after Shutdown) counts as
// alive: it has nothing left to serve.
func (s *Server) Alive(ctx context.Context) bool {
	answered := make(chan struct{}, len(s.loops)) // late answers never block a loop
	for _, l := range s.loops {
		if !l.post(func() { answered <- struct{}{} }) {
			answered <- struct{}{}
		}
	}
	for range s.loops {
		select {
		case <-answered:
		case <-ctx.Done():
			return false
		}
	}
	return true
}
