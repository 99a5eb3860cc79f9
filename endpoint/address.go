// Package endpoint names the two ends moat's data path touches besides the
// peer: the address it listens on and the address it connects to (the
// plaintext upstream in server mode, the TLS server in client mode).
//
// An Address is an immutable value: parse it once, copy it freely. A
// Resolver owns what changes over time, the resolved addresses of a host
// name, and dials them without blocking the event loop.
//
// Typical use:
//
//	a, err := endpoint.ParseTarget("app.internal:8080")
//	r := endpoint.NewResolver(a)
//	err = r.Resolve(ctx) // before serving
//	go r.KeepResolved(30*time.Second, stop)
//	// in the event loop, for i := 0; i < r.Addresses() until one connects:
//	fd, inProgress, err := r.DialAddress(i)
//	// if inProgress: wait for EPOLLOUT, then endpoint.FinishDial(fd)
package endpoint

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"golang.org/x/sys/unix"
)

// Address is where moat listens or connects: "host:port" for TCP,
// "unix:/path" for a unix socket. The zero Address is no address at all;
// it cannot be dialled.
type Address struct {
	network string // "tcp", "unix", or "" for the zero Address
	addr    string // host:port as written for tcp, the socket path for unix
	host    string
	port    uint16
}

// ParseTarget parses "host:port", "[v6]:port" or "unix:/path".
func ParseTarget(s string) (Address, error) {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if path == "" {
			return Address{}, fmt.Errorf("%q: empty unix socket path", s)
		}
		if len(path) >= len(unix.RawSockaddrUnix{}.Path) {
			return Address{}, fmt.Errorf("%q: unix socket path longer than %d bytes", s, len(unix.RawSockaddrUnix{}.Path)-1)
		}
		return Address{network: "unix", addr: path}, nil
	}
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		return Address{}, fmt.Errorf("%q: want host:port or unix:/path", s)
	}
	port, err := net.LookupPort("tcp", portStr)
	if err != nil || portStr == "" || port < 0 || port > 65535 {
		return Address{}, fmt.Errorf("%q: bad port %q", s, portStr)
	}
	if host == "" {
		return Address{}, fmt.Errorf("%q: missing host", s)
	}
	return Address{network: "tcp", addr: s, host: host, port: uint16(port)}, nil
}

// ParseListen parses an address to listen on. It is ParseTarget, except
// that the host may be empty (":8443"): every local address, IPv4 and IPv6;
// and that "systemd:NAME" names a socket passed by systemd (see
// SystemdListener).
func ParseListen(s string) (Address, error) {
	if strings.HasPrefix(s, systemdPrefix) {
		return parseSystemd(s)
	}
	if rest, ok := strings.CutPrefix(s, ":"); ok && !strings.Contains(rest, ":") {
		a, err := ParseTarget("0.0.0.0" + s)
		if err != nil {
			return Address{}, fmt.Errorf("%q: bad port %q", s, rest)
		}
		a.addr, a.host = s, ""
		return a, nil
	}
	return ParseTarget(s)
}

// String returns the address as the user wrote it ("" for the zero
// Address).
func (a Address) String() string {
	switch a.network {
	case "unix":
		return "unix:" + a.addr
	case "systemd":
		return systemdPrefix + a.addr
	}
	return a.addr
}

// Network is "tcp" or "unix", as net.Dial and net.Listen take it, or
// "systemd" for a socket passed by systemd ("" for the zero Address).
func (a Address) Network() string { return a.network }

// Host returns the host part of a TCP address ("" for unix sockets, and
// for a listen address without a host).
func (a Address) Host() string { return a.host }

// Port returns the port of a TCP address (0 for unix sockets, or when the
// system is to choose one).
func (a Address) Port() int { return int(a.port) }

// Path returns the socket path of a unix address ("" for TCP).
func (a Address) Path() string {
	if a.network == "unix" {
		return a.addr
	}
	return ""
}

// NetAddress is the address as net.Dial and net.Listen take it along with
// Network: host:port for TCP, the socket path for unix.
func (a Address) NetAddress() string { return a.addr }

// literal returns the IP of a TCP address whose host is an IP literal.
func (a Address) literal() (netip.Addr, bool) {
	if a.network != "tcp" {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(a.host)
	return ip.Unmap(), err == nil
}

// errNoAddress is the zero Address asked to connect.
var errNoAddress = errors.New("no address")

// sockaddr returns the socket address to connect to: the unix socket, or
// ip (one of the host's addresses) at the address's port.
func (a Address) sockaddr(ip netip.Addr) (unix.Sockaddr, int, error) {
	switch {
	case a.network == "unix":
		return &unix.SockaddrUnix{Name: a.addr}, unix.AF_UNIX, nil
	case a.network == "":
		return nil, 0, errNoAddress
	case ip.Is4():
		return &unix.SockaddrInet4{Port: int(a.port), Addr: ip.As4()}, unix.AF_INET, nil
	case ip.Is6():
		return &unix.SockaddrInet6{Port: int(a.port), Addr: ip.As16()}, unix.AF_INET6, nil
	}
	return nil, 0, ErrNotResolved
}
