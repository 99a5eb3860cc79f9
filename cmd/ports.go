package cmd

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/moat-proxy/moat/endpoint"
)

// checkPortClash refuses a --status address that would bind the port
// --listen binds: the second bind fails at start (or, in a pod, the probes
// hit the TLS port and the container restarts for ever). Port 0 picks a
// free port and never clashes; two addresses clash when their hosts are
// equal or either is every address of the host ("" , 0.0.0.0, [::]).
// --dry-run runs it too, so a configuration check catches the mistake.
func checkPortClash(listen endpoint.Address, status string) error {
	if status == "" || listen.Network() != "tcp" || listen.Port() == 0 {
		return nil
	}
	host, portText, err := net.SplitHostPort(strings.TrimPrefix(status, "http://"))
	if err != nil {
		return nil // status.CheckAddr words a malformed --status
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port != listen.Port() {
		return nil
	}
	if everyAddress(host) || everyAddress(listen.Host()) || sameHost(host, listen.Host()) {
		return flagError("status", "%s uses port %d, which --listen %s binds too; give the status port a port of its own", status, port, listen)
	}
	return nil
}

func everyAddress(host string) bool {
	if host == "" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsUnspecified()
}

func sameHost(a, b string) bool {
	if strings.EqualFold(a, b) {
		return true
	}
	ipa, erra := netip.ParseAddr(a)
	ipb, errb := netip.ParseAddr(b)
	return erra == nil && errb == nil && ipa.Unmap() == ipb.Unmap()
}
