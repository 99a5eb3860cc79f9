// Package upstream holds the plaintext side of a moat connection: where the
// plaintext goes (a TCP address or a unix socket) and how it is dialled
// without blocking the event loop.
//
// Typical use from an event loop:
//
//	t, err := upstream.ParseTarget("unix:/run/app.sock")
//	fd, inProgress, err := t.DialNonblocking()
//	// if inProgress: wait for EPOLLOUT, then upstream.FinishDial(fd)
package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Target is an address moat connects to or listens on: "host:port" for TCP,
// "unix:/path" for a unix socket.
type Target struct {
	// Network is "tcp" or "unix".
	Network string
	// Address is host:port for tcp and the socket path for unix.
	Address string

	host string
	port uint16
	// addrs caches the resolved addresses of a host name, refreshed in the
	// background, so that dialling never waits on DNS inside the event loop.
	addrs *atomic.Pointer[[]netip.Addr]
}

// ParseTarget parses "host:port", "[v6]:port" or "unix:/path".
func ParseTarget(s string) (Target, error) {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if path == "" {
			return Target{}, fmt.Errorf("%q: empty unix socket path", s)
		}
		if len(path) >= len(unix.RawSockaddrUnix{}.Path) {
			return Target{}, fmt.Errorf("%q: unix socket path longer than %d bytes", s, len(unix.RawSockaddrUnix{}.Path)-1)
		}
		return Target{Network: "unix", Address: path}, nil
	}
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		return Target{}, fmt.Errorf("%q: want host:port or unix:/path", s)
	}
	port, err := net.LookupPort("tcp", portStr)
	if err != nil || portStr == "" || port < 0 || port > 65535 {
		return Target{}, fmt.Errorf("%q: bad port %q", s, portStr)
	}
	if host == "" {
		return Target{}, fmt.Errorf("%q: missing host", s)
	}
	t := Target{Network: "tcp", Address: s, host: host, port: uint16(port), addrs: new(atomic.Pointer[[]netip.Addr])}
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs := []netip.Addr{ip.Unmap()}
		t.addrs.Store(&addrs)
	}
	return t, nil
}

// ParseListen parses an address to listen on. It is ParseTarget, except
// that the host may be empty (":8443"): every local address, IPv4 and IPv6.
func ParseListen(s string) (Target, error) {
	if rest, ok := strings.CutPrefix(s, ":"); ok && !strings.Contains(rest, ":") {
		t, err := ParseTarget("0.0.0.0" + s)
		if err != nil {
			return Target{}, fmt.Errorf("%q: bad port %q", s, rest)
		}
		t.Address, t.host = s, ""
		return t, nil
	}
	return ParseTarget(s)
}

// String returns the target as the user wrote it.
func (t Target) String() string {
	if t.Network == "unix" {
		return "unix:" + t.Address
	}
	return t.Address
}

// Port returns the port of a TCP target (0 for unix sockets, or when the
// system is to choose one).
func (t Target) Port() int { return int(t.port) }

// Host returns the host part of a TCP target ("" for unix sockets).
func (t Target) Host() string { return t.host }

// Resolve looks up a host name target now and caches the result for
// DialNonblocking. IP literals and unix sockets need nothing.
func (t Target) Resolve(ctx context.Context) error {
	if t.Network != "tcp" {
		return nil
	}
	if _, err := netip.ParseAddr(t.host); err == nil {
		return nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", t.host)
	if err != nil {
		return fmt.Errorf("resolve %s: %w", t.host, err)
	}
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
	t.addrs.Store(&ips)
	return nil
}

// Pin makes a host name target connect to addrs, in that order, as if the
// resolver had answered them (until the next Resolve). For tests and
// diagnostics.
func (t Target) Pin(addrs ...netip.Addr) {
	if t.addrs != nil {
		a := slices.Clone(addrs)
		t.addrs.Store(&a)
	}
}

// KeepResolved re-resolves a host name target every interval until stop is
// closed. Failures keep the previous addresses.
func (t Target) KeepResolved(interval time.Duration, stop <-chan struct{}) {
	if t.Network != "tcp" {
		return
	}
	if _, err := netip.ParseAddr(t.host); err == nil {
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
			_ = t.Resolve(ctx)
			cancel()
		}
	}
}

// ErrNotResolved is returned when a host name target has no addresses yet.
var ErrNotResolved = errors.New("host name not resolved yet")

// Sockaddr returns the address to connect to: the first one of a host name.
func (t Target) Sockaddr() (unix.Sockaddr, int, error) { return t.sockaddr(0) }

// Addresses is how many addresses a connect may try, in order: those of a
// host name (IPv4 first), or 1.
func (t Target) Addresses() int {
	if t.Network == "unix" {
		return 1
	}
	if p := t.addrs.Load(); p != nil {
		return len(*p)
	}
	return 0
}

// sockaddr returns address i of the target (see Addresses).
func (t Target) sockaddr(i int) (unix.Sockaddr, int, error) {
	if t.Network == "unix" {
		return &unix.SockaddrUnix{Name: t.Address}, unix.AF_UNIX, nil
	}
	p := t.addrs.Load()
	if p == nil || len(*p) == 0 {
		return nil, 0, ErrNotResolved
	}
	ip := (*p)[min(i, len(*p)-1)]
	if ip.Is4() {
		return &unix.SockaddrInet4{Port: int(t.port), Addr: ip.As4()}, unix.AF_INET, nil
	}
	sa := &unix.SockaddrInet6{Port: int(t.port), Addr: ip.As16()}
	return sa, unix.AF_INET6, nil
}
