package status

import (
	"context"
	"sync"
	"time"
)

// Cached wraps an upstream check so that it runs at most once per ttl;
// probes in between get the last result. Probes arriving while a check runs
// wait for it rather than starting their own, so however many kubelets and
// load balancers ask, the upstream sees at most one connect per ttl.
func Cached(ttl time.Duration, check func(ctx context.Context) error) func(ctx context.Context) error {
	c := &cachedCheck{ttl: ttl, check: check}
	return c.run
}

type cachedCheck struct {
	ttl   time.Duration
	check func(ctx context.Context) error

	mu  sync.Mutex // held while a check runs, so that probes share it
	at  time.Time  // when err was found; zero before the first check
	err error
}

func (c *cachedCheck) run(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < c.ttl {
		return c.err
	}
	// One probe giving up must not cache "context canceled" for the
	// others: the check carries its own timeout.
	c.err = c.check(context.WithoutCancel(ctx))
	c.at = time.Now()
	return c.err
}
