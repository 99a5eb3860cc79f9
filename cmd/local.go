package cmd

import (
	"fmt"
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
	var why string
	switch a.Locality() {
	case endpoint.Local:
		return nil
	case endpoint.EveryAddress:
		why = "is every address of this host, not a loopback address or unix socket; plaintext would cross the network"
	case endpoint.HostName:
		why = "is a host name other than localhost, which cannot be proven local; plaintext could cross the network"
	default:
		why = "is not a loopback address or unix socket; plaintext would cross the network"
	}
	return p.refuse(a, why)
}

// checkResolved refuses a localhost target that resolved to anything but
// loopback addresses (an /etc/hosts or DNS answer pointing it elsewhere).
func (p plaintextSide) checkResolved(r *endpoint.Resolver) error {
	if p.unsafe || p.flag != "target" || r.IsLocal() {
		return nil
	}
	return p.refuse(r.Address(), fmt.Sprintf("resolves to %s, not only loopback addresses; plaintext would cross the network", addrList(r.Resolved())))
}

func (p plaintextSide) refuse(a endpoint.Address, why string) error {
	return flagError(p.flag, "%s %s. Add --unsafe-%s to allow it", a, why, p.flag)
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
