package endpoint

import (
	"net/netip"
	"slices"
	"strings"
)

// Locality says whether traffic to or from an address stays on this host,
// and if not, why moat cannot tell that it does. moat's plaintext side (the
// target in server mode, the listener in client mode) must be Local unless
// the user says otherwise; cmd turns the other values into words and flags.
type Locality int

const (
	// NoAddress is the zero Address's locality: there is nothing to judge.
	NoAddress Locality = iota
	// Local is a unix socket, a loopback IP (127.0.0.0/8, ::1), or the
	// name localhost.
	Local
	// EveryAddress is a listen address without a host (":8080") or with
	// the unspecified IP (0.0.0.0, ::): every interface, not only loopback.
	EveryAddress
	// NotLoopback is an IP literal outside the loopback ranges.
	NotLoopback
	// HostName is a host name other than localhost. Its addresses are
	// whatever DNS answers, now and at every re-resolution, so it cannot
	// be proven local by looking at it.
	HostName
	// Inherited is a socket passed by systemd ("systemd:NAME"): where it
	// listens is known only once it is taken (see SystemdListener).
	Inherited
)

// Locality reports whether a stays on this host. It looks at the address
// only and never resolves: "localhost" counts as Local by name (RFC 6761
// reserves it for loopback; Resolver.IsLocal also checks what it resolved
// to), any other name is HostName even if it happens to resolve to
// 127.0.0.1 today.
func (a Address) Locality() Locality {
	switch a.network {
	case "":
		return NoAddress
	case "unix":
		return Local
	case "systemd":
		return Inherited
	}
	if a.host == "" {
		return EveryAddress
	}
	if ip, ok := a.literal(); ok {
		switch {
		case ip.IsLoopback():
			return Local
		case ip.IsUnspecified():
			return EveryAddress
		}
		return NotLoopback
	}
	if strings.EqualFold(strings.TrimSuffix(a.host, "."), "localhost") {
		return Local
	}
	return HostName
}

// IsLocal reports whether a is a unix socket, a loopback IP or localhost.
func (a Address) IsLocal() bool { return a.Locality() == Local }

// IsLocal reports whether the Resolver's address is Local and, for a name
// (localhost), whether every address it resolved to is loopback: an
// /etc/hosts or DNS answer that points localhost elsewhere does not count.
// Call it after Resolve.
func (r *Resolver) IsLocal() bool {
	if !r.Address().IsLocal() {
		return false
	}
	return !slices.ContainsFunc(r.Resolved(), func(ip netip.Addr) bool { return !ip.IsLoopback() })
}

// Resolved returns a copy of the addresses a host name last resolved to
// (nil for IP literals, unix sockets, and a name not resolved yet).
func (r *Resolver) Resolved() []netip.Addr {
	if !r.hostName() {
		return nil
	}
	if p := r.ips.Load(); p != nil {
		return slices.Clone(*p)
	}
	return nil
}
