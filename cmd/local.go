package cmd

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/spf13/pflag"

	"github.com/moat-proxy/moat/endpoint"
)

// plaintextSide is the side of a proxy command that carries plaintext: its
// address must stay on this host unless the user opts out with the
// --unsafe-* flag. That is --target in server mode (the upstream) and
// --listen in client mode (where local applications connect).
type plaintextSide struct {
	flag   string // "target" or "listen"
	unsafe bool   // --unsafe-target or --unsafe-listen given
}

// register adds the --unsafe-<flag> opt-out.
func (p *plaintextSide) register(f *pflag.FlagSet) {
	f.BoolVar(&p.unsafe, "unsafe-"+p.flag, false, fmt.Sprintf("allow a --%s that is not a loopback address, localhost or a unix socket; its plaintext then crosses the network", p.flag))
}

// pick returns the address of the plaintext side.
func (p plaintextSide) pick(listen, target endpoint.Address) endpoint.Address {
	if p.flag == "listen" {
		return listen
	}
	return target
}

// check refuses a plaintext side that may leave this host, before anything
// is loaded or resolved. Host names other than localhost are refused
// without resolving them: what they resolve to can change at every
// re-resolution, so no answer proves them local.
func (p plaintextSide) check(a endpoint.Address) error {
	if p.unsafe {
		return nil
	}
	return p.judge(a.String(), a.Locality())
}

// judge refuses a plaintext side whose locality is not Local, saying why.
func (p plaintextSide) judge(what string, l endpoint.Locality) error {
	var why string
	switch l {
	case endpoint.Local, endpoint.Inherited: // a socket from systemd is judged by checkBound
		return nil
	case endpoint.EveryAddress:
		why = "is every address of this host, not a loopback address or unix socket; plaintext would cross the network"
	case endpoint.HostName:
		why = "is a host name other than localhost, which cannot be proven local; plaintext could cross the network"
	default:
		why = "is not a loopback address or unix socket; plaintext would cross the network"
	}
	return p.refuse(what, why)
}

// checkBound refuses a plaintext --listen socket passed by systemd that
// listens beyond this host: its address is known only once it is taken.
func (p plaintextSide) checkBound(listen endpoint.Address, bound net.Addr) error {
	if p.unsafe || p.flag != "listen" || listen.Locality() != endpoint.Inherited {
		return nil
	}
	return p.judge(fmt.Sprintf("%s (listening on %s)", listen, bound), endpoint.BoundLocality(bound))
}

// checkResolved refuses a localhost target that resolved to anything but
// loopback addresses (an /etc/hosts or DNS answer pointing it elsewhere).
func (p plaintextSide) checkResolved(r *endpoint.Resolver) error {
	if p.unsafe || p.flag != "target" || r.IsLocal() {
		return nil
	}
	return p.refuse(r.Address().String(), fmt.Sprintf("resolves to %s, not only loopback addresses; plaintext would cross the network", addrList(r.Resolved())))
}

func (p plaintextSide) refuse(what, why string) error {
	return flagError(p.flag, "%s %s. Add --unsafe-%s to allow it", what, why, p.flag)
}

func addrList(ips []netip.Addr) string {
	s := ""
	for i, ip := range ips {
		if i > 0 {
			s += ", "
		}
		s += ip.String()
	}
	return s
}
