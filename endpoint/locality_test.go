package endpoint

import (
	"context"
	"net/netip"
	"testing"
)

// TestLocalityOfAddresses: only unix sockets, loopback IPs and localhost
// are Local; every other address says why it is not.
func TestLocalityOfAddresses(t *testing.T) {
	cases := []struct {
		in     string
		listen bool
		want   Locality
	}{
		{in: "unix:/run/app.sock", want: Local},
		{in: "127.0.0.1:8080", want: Local},
		{in: "127.1.2.3:8080", want: Local},
		{in: "[::1]:8080", want: Local},
		{in: "[::ffff:127.0.0.1]:8080", want: Local},
		{in: "localhost:8080", want: Local},
		{in: "LocalHost.:8080", want: Local},
		{in: ":8080", listen: true, want: EveryAddress},
		{in: "0.0.0.0:8080", listen: true, want: EveryAddress},
		{in: "[::]:8080", listen: true, want: EveryAddress},
		{in: "10.1.2.3:80", want: NotLoopback},
		{in: "[2001:db8::1]:80", want: NotLoopback},
		{in: "[::ffff:10.0.0.1]:80", want: NotLoopback},
		{in: "128.0.0.1:80", want: NotLoopback},
		{in: "db.internal:5432", want: HostName},
		{in: "localhost.example.com:80", want: HostName},
		{in: "app.localhost:80", want: HostName},
	}
	for _, c := range cases {
		parse := ParseTarget
		if c.listen {
			parse = ParseListen
		}
		a, err := parse(c.in)
		if err != nil {
			t.Fatalf("parse %q: %v", c.in, err)
		}
		if got := a.Locality(); got != c.want {
			t.Errorf("%q: Locality() = %d, want %d", c.in, got, c.want)
		}
		if a.IsLocal() != (c.want == Local) {
			t.Errorf("%q: IsLocal() = %v", c.in, a.IsLocal())
		}
	}
	if got := (Address{}).Locality(); got != NoAddress {
		t.Errorf("zero Address: Locality() = %d, want NoAddress", got)
	}
}

// TestResolverIsLocalChecksWhatLocalhostResolvedTo: localhost is local only
// while every address it resolved to is loopback.
func TestResolverIsLocalChecksWhatLocalhostResolvedTo(t *testing.T) {
	cases := []struct {
		target string
		ips    []string
		want   bool
	}{
		{target: "localhost:80", ips: []string{"127.0.0.1", "::1"}, want: true},
		{target: "localhost:80", ips: []string{"127.0.0.1", "192.168.1.5"}, want: false},
		{target: "db.internal:80", ips: []string{"127.0.0.1"}, want: false},
		{target: "127.0.0.1:80", want: true},
		{target: "unix:/run/app.sock", want: true},
	}
	for _, c := range cases {
		a, err := ParseTarget(c.target)
		if err != nil {
			t.Fatal(err)
		}
		r := NewResolverFunc(a, func(context.Context, string) ([]netip.Addr, error) {
			var ips []netip.Addr
			for _, s := range c.ips {
				ips = append(ips, netip.MustParseAddr(s))
			}
			return ips, nil
		})
		if err := r.Resolve(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := r.IsLocal(); got != c.want {
			t.Errorf("%s resolving to %v: IsLocal() = %v, want %v", c.target, c.ips, got, c.want)
		}
	}
}
