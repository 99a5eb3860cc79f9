package cmd

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/moat-proxy/moat/endpoint"
)

// TestPlaintextSideMustStayLocal: server mode refuses a --target, client
// mode a --listen, that may leave the host, with one line naming the
// --unsafe-* flag, as a usage error; the flag lets it through. --dry-run
// runs the same check.
func TestPlaintextSideMustStayLocal(t *testing.T) {
	server := []string{"server", "--dry-run", "--listen", "127.0.0.1:0", "--self-signed", "--disable-authentication", "--target"}
	client := []string{"client", "--dry-run", "--target", "127.0.0.1:443", "--listen"}
	cases := []struct {
		args []string
		want string // "" when the command is accepted
	}{
		{append(server, "127.0.0.1:80"), ""},
		{append(server, "[::1]:80"), ""},
		{append(server, "localhost:80"), ""},
		{append(server, "unix:/run/app.sock"), ""},
		{append(server, "10.1.2.3:80"), "--target: 10.1.2.3:80 is not a loopback address or unix socket; plaintext would cross the network. Add --unsafe-target to allow it"},
		{append(server, "0.0.0.0:80"), "--target: 0.0.0.0:80 is every address of this host, not a loopback address or unix socket; plaintext would cross the network. Add --unsafe-target to allow it"},
		{append(server, "db.internal:5432"), "--target: db.internal:5432 is a host name other than localhost, which cannot be proven local; plaintext could cross the network. Add --unsafe-target to allow it"},
		{append(server, "10.1.2.3:80", "--unsafe-target"), ""},
		{append(client, "127.0.0.1:6379"), ""},
		{append(client, "unix:/run/moat/app.sock"), ""},
		{append(client, ":6379"), "--listen: :6379 is every address of this host, not a loopback address or unix socket; plaintext would cross the network. Add --unsafe-listen to allow it"},
		{append(client, "0.0.0.0:6379"), "--listen: 0.0.0.0:6379 is every address of this host, not a loopback address or unix socket; plaintext would cross the network. Add --unsafe-listen to allow it"},
		{append(client, "192.0.2.1:6379"), "--listen: 192.0.2.1:6379 is not a loopback address or unix socket; plaintext would cross the network. Add --unsafe-listen to allow it"},
		{append(client, "0.0.0.0:6379", "--unsafe-listen"), ""},
		// A server's --listen and a client's --target carry TLS: any address.
		{[]string{"server", "--dry-run", "--listen", ":0", "--target", "127.0.0.1:80", "--self-signed", "--disable-authentication"}, ""},
		{[]string{"client", "--dry-run", "--listen", "127.0.0.1:0", "--target", "192.0.2.1:443"}, ""},
	}
	for _, c := range cases {
		_, err := run(t, c.args...)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: refused: %v", c.args[1:], err)
		case c.want != "" && (err == nil || err.Error() != c.want):
			t.Errorf("%v: got error %v\nwant %s", c.args[1:], err, c.want)
		case c.want != "" && !errors.As(err, new(usageError)):
			t.Errorf("%v: %v is not a usage error (exit 2)", c.args[1:], err)
		}
	}
}

// TestLocalhostTargetResolvingElsewhereIsRefused: a localhost that resolved
// to anything but loopback is refused after resolution, naming what it
// resolved to.
func TestLocalhostTargetResolvingElsewhereIsRefused(t *testing.T) {
	a, err := endpoint.ParseTarget("localhost:80")
	if err != nil {
		t.Fatal(err)
	}
	r := endpoint.NewResolverFunc(a, func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("192.168.1.5")}, nil
	})
	if err := r.Resolve(context.Background()); err != nil {
		t.Fatal(err)
	}
	side := plaintextSide{flag: "target"}
	want := "--target: localhost:80 resolves to 127.0.0.1, 192.168.1.5, not only loopback addresses; plaintext would cross the network. Add --unsafe-target to allow it"
	if err := side.checkResolved(r); err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	side.unsafe = true
	if err := side.checkResolved(r); err != nil {
		t.Errorf("with --unsafe-target: %v", err)
	}
}
