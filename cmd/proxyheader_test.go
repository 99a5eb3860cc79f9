package cmd

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseRange(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.0/8": "10.0.0.0/8", "10.1.2.3/8": "10.0.0.0/8", "192.0.2.7": "192.0.2.7/32",
		"2001:db8::/32": "2001:db8::/32", "2001:db8::1": "2001:db8::1/128", "::ffff:10.0.0.0/104": "10.0.0.0/8",
		"::ffff:10.0.0.1": "10.0.0.1/32",
	} {
		got, err := parseRange(in)
		if err != nil || got != netip.MustParsePrefix(want) {
			t.Errorf("parseRange(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "10.0.0.0/33", "nonsense", "fe80::1%eth0", "10.0.0/8"} {
		if _, err := parseRange(bad); err == nil {
			t.Errorf("parseRange(%q) accepted", bad)
		}
	}
}

// TestAcceptProxyProtocolFlag: the flag takes a list, and a bad entry is a
// usage error naming the flag and the entry.
func TestAcceptProxyProtocolFlag(t *testing.T) {
	base := []string{"server", "--dry-run", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:8080", "--self-signed", "--disable-authentication"}
	if _, err := run(t, append(base, "--accept-proxy-protocol", "10.0.0.0/8,192.0.2.7", "--accept-proxy-protocol", "2001:db8::/32")...); err != nil {
		t.Fatal(err)
	}
	_, err := run(t, append(base, "--accept-proxy-protocol", "10.0.0.0/8,10.0.0.300")...)
	var ue usageError
	if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), "--accept-proxy-protocol") || !strings.Contains(err.Error(), "10.0.0.300") {
		t.Fatalf("error %v, want a usage error naming --accept-proxy-protocol and the entry", err)
	}
	if _, err := run(t, "client", "--dry-run", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:8443", "--accept-proxy-protocol", "10.0.0.0/8"); err == nil {
		t.Fatal("client mode accepted --accept-proxy-protocol")
	}
}
