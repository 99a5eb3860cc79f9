package cmd

import (
	"errors"
	"net/netip"
	"strings"

	"github.com/spf13/pflag"

	"github.com/moat-proxy/moat/proxy"
)

// acceptProxyOptions is --accept-proxy-protocol: the load balancers whose
// connections begin with a PROXY protocol header naming the real client.
type acceptProxyOptions struct {
	ranges []string
}

func (a *acceptProxyOptions) register(f *pflag.FlagSet) {
	f.StringSliceVar(&a.ranges, "accept-proxy-protocol", nil, "connections from these source ranges (CIDR[,CIDR...], or single addresses: your TCP load balancers) must begin with a PROXY protocol v1 or v2 header, whose client address moat then uses; a header from anywhere else is refused")
}

// apply parses the ranges into cfg.
func (a *acceptProxyOptions) apply(cfg *proxy.Config) error {
	for _, r := range a.ranges {
		r = strings.TrimSpace(r)
		p, err := parseRange(r)
		if err != nil {
			return flagError("accept-proxy-protocol", "%q is not a CIDR range or an IP address", r)
		}
		cfg.AcceptProxyHeader = append(cfg.AcceptProxyHeader, p)
	}
	return nil
}

// parseRange reads a CIDR range or a single address, as a /32 or /128. A
// range with host bits set is taken as its network ("10.0.0.5/8" is
// 10.0.0.0/8), as ip(8) does; IPv4-mapped IPv6 ranges are unmapped, since
// the sources they are compared with are.
func parseRange(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if a.Zone() != "" {
			return netip.Prefix{}, errors.New("an address with a zone is not a source range")
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}
