package endpoint

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"
)

// LookupFunc answers the addresses of a host name, as
// net.Resolver.LookupNetIP does for the "ip" network.
type LookupFunc func(ctx context.Context, host string) ([]netip.Addr, error)

// Resolver is the address moat connects to, with the addresses its host
// name resolved to, so that dialling never waits on DNS inside the event
// loop. One Resolver is shared by pointer between whoever refreshes it and
// the event loops that dial; all methods are safe for concurrent use.
//
// The zero Resolver (and a nil one) has no address: Addresses is 0 and
// DialAddress fails.
type Resolver struct {
	addr   Address
	lookup LookupFunc
	ips    atomic.Pointer[[]netip.Addr] // nil until a host name resolves
}

// NewResolver returns a Resolver for a that looks host names up in the
// system's resolver.
func NewResolver(a Address) *Resolver {
	return NewResolverFunc(a, func(ctx context.Context, host string) ([]netip.Addr, error) {
		return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	})
}

// NewResolverFunc returns a Resolver for a that asks lookup instead of the
// system's resolver: a fixed table, a service registry, a test.
func NewResolverFunc(a Address, lookup LookupFunc) *Resolver {
	return &Resolver{addr: a, lookup: lookup}
}

// Address returns the address the Resolver resolves.
func (r *Resolver) Address() Address {
	if r == nil {
		return Address{}
	}
	return r.addr
}

// String returns the address as the user wrote it.
func (r *Resolver) String() string { return r.Address().String() }

// hostName reports whether the address is a host name, the only kind that
// needs resolving: IP literals and unix sockets are dialled as they are.
func (r *Resolver) hostName() bool {
	if r == nil || r.addr.network != "tcp" {
		return false
	}
	_, literal := r.addr.literal()
	return !literal
}

// Resolve looks a host name up now and caches the answer for DialAddress,
// IPv4 addresses first. IP literals and unix sockets need nothing.
func (r *Resolver) Resolve(ctx context.Context) error {
	if r == nil || r.addr.network == "" {
		return errNoAddress
	}
	if !r.hostName() {
		return nil
	}
	ips, err := r.lookup(ctx, r.addr.host)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", r.addr.host, err)
	}
	ips = slices.Clone(ips)
	for i := range ips {
		ips[i] = ips[i].Unmap()
	}
	// IPv4 first: "localhost" names both 127.0.0.1 and ::1, and local
	// services listen on 127.0.0.1 far more often than on ::1.
	slices.SortStableFunc(ips, func(a, b netip.Addr) int {
		switch {
		case a.Is4() && !b.Is4():
			return -1
		case !a.Is4() && b.Is4():
			return 1
		}
		return 0
	})
	r.ips.Store(&ips)
	return nil
}

// KeepResolved re-resolves a host name every interval until stop is
// closed. Failures keep the previous addresses.
func (r *Resolver) KeepResolved(interval time.Duration, stop <-chan struct{}) {
	if !r.hostName() {
		return
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), interval)
			_ = r.Resolve(ctx)
			cancel()
		}
	}
}

// ErrNotResolved is returned when a host name has no addresses yet.
var ErrNotResolved = errors.New("host name not resolved yet")

// Addresses is how many addresses a connect may try, in order: those of a
// host name (IPv4 first), 1 for an IP literal or a unix socket, 0 when
// there is nothing to dial yet.
func (r *Resolver) Addresses() int {
	switch {
	case r == nil || r.addr.network == "":
		return 0
	case !r.hostName():
		return 1
	}
	if p := r.ips.Load(); p != nil {
		return len(*p)
	}
	return 0
}

// ip returns address i of a host name (see Addresses), or the IP literal;
// the zero netip.Addr when there is none.
func (r *Resolver) ip(i int) netip.Addr {
	if ip, ok := r.addr.literal(); ok {
		return ip
	}
	if p := r.ips.Load(); p != nil && len(*p) > 0 {
		return (*p)[min(i, len(*p)-1)]
	}
	return netip.Addr{}
}
