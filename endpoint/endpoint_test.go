package endpoint

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseTarget(t *testing.T) {
	cases := []struct {
		in, network, address string
		port                 int
		bad                  bool
	}{
		{in: "127.0.0.1:8080", network: "tcp", address: "127.0.0.1:8080", port: 8080},
		{in: "[::1]:443", network: "tcp", address: "[::1]:443", port: 443},
		{in: "localhost:https", network: "tcp", address: "localhost:https", port: 443},
		{in: "unix:/run/app.sock", network: "unix", address: "/run/app.sock"},
		{in: "127.0.0.1", bad: true},
		{in: ":8080", bad: true},
		{in: "127.0.0.1:99999", bad: true},
		{in: "unix:", bad: true},
		{in: "unix:/" + string(bytes.Repeat([]byte("x"), 120)), bad: true},
	}
	for _, c := range cases {
		got, err := ParseTarget(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("ParseTarget(%q) accepted %+v", c.in, got)
			}
			continue
		}
		if err != nil || got.Network() != c.network || got.NetAddress() != c.address || got.Port() != c.port {
			t.Errorf("ParseTarget(%q) = %+v (port %d), %v", c.in, got, got.Port(), err)
		}
		if got.String() != c.in {
			t.Errorf("String() = %q, want %q", got.String(), c.in)
		}
	}
}

// TestDialNonblocking connects to TCP and unix listeners and reports a
// refused connect as an error naming the target.
func TestDialNonblocking(t *testing.T) {
	tcp, _ := net.Listen("tcp", "127.0.0.1:0")
	defer tcp.Close()
	sock := filepath.Join(t.TempDir(), "s.sock")
	ux, _ := net.Listen("unix", sock)
	defer ux.Close()
	for _, addr := range []string{tcp.Addr().String(), "unix:" + sock} {
		tgt, err := ParseTarget(addr)
		if err != nil {
			t.Fatal(err)
		}
		fd, inProgress, err := NewResolver(tgt).DialAddress(0)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		if inProgress {
			waitWritable(t, fd)
			if err := FinishDial(fd); err != nil {
				t.Fatalf("finish %s: %v", addr, err)
			}
		}
		unix.Close(fd)
	}
	tcp.Close()
	tgt, _ := ParseTarget(tcp.Addr().String())
	fd, inProgress, err := NewResolver(tgt).DialAddress(0)
	if err == nil && inProgress {
		waitWritable(t, fd)
		err = FinishDial(fd)
		unix.Close(fd)
	}
	if !errors.Is(err, unix.ECONNREFUSED) {
		t.Fatalf("dial to a closed port: %v, want connection refused", err)
	}
}

func waitWritable(t *testing.T, fd int) {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	if _, err := unix.Poll(fds, int((5 * time.Second).Milliseconds())); err != nil {
		t.Fatal(err)
	}
}

// TestResolvePrefersIPv4: "localhost" dials 127.0.0.1, where local
// services usually listen, even when ::1 is also listed.
func TestResolvePrefersIPv4(t *testing.T) {
	tgt, err := ParseTarget("localhost:8080")
	if err != nil {
		t.Fatal(err)
	}
	r := NewResolver(tgt)
	if err := r.Resolve(context.Background()); err != nil {
		t.Fatal(err)
	}
	sa, family, err := r.sockaddr(0)
	if err != nil {
		t.Fatal(err)
	}
	if family != unix.AF_INET || sa.(*unix.SockaddrInet4).Addr != [4]byte{127, 0, 0, 1} {
		t.Fatalf("localhost resolved to %#v", sa)
	}
}

// TestParseListenAllowsEmptyHost: ":8443" listens on every address, as in
// the README's examples; a bad port is still refused.
func TestParseListenAllowsEmptyHost(t *testing.T) {
	got, err := ParseListen(":8443")
	if err != nil || got.Network() != "tcp" || got.NetAddress() != ":8443" || got.Port() != 8443 {
		t.Fatalf("ParseListen(:8443) = %+v, %v", got, err)
	}
	for _, bad := range []string{":", ":x", ":99999", "8443"} {
		if _, err := ParseListen(bad); err == nil {
			t.Errorf("ParseListen(%q) accepted", bad)
		}
	}
	if got, err := ParseListen("unix:/run/moat.sock"); err != nil || got.Network() != "unix" {
		t.Fatalf("ParseListen(unix:...) = %+v, %v", got, err)
	}
}

// TestResolverCountsWhatItMayDial: a host name may be dialled at each of
// its addresses, IPv4 first, in the order the lookup gave them; an IP
// literal or a unix socket at exactly one; an unresolved name at none.
func TestResolverCountsWhatItMayDial(t *testing.T) {
	name, _ := ParseTarget("app.test:8080")
	answer := []netip.Addr{netip.MustParseAddr("::1"), netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("::ffff:127.0.0.3")}
	r := NewResolverFunc(name, func(ctx context.Context, host string) ([]netip.Addr, error) {
		if host != "app.test" {
			t.Errorf("looked up %q", host)
		}
		return answer, nil
	})
	if n := r.Addresses(); n != 0 {
		t.Fatalf("unresolved: %d addresses", n)
	}
	if _, _, err := r.DialAddress(0); !errors.Is(err, ErrNotResolved) {
		t.Fatalf("dial before resolving: %v, want ErrNotResolved", err)
	}
	if err := r.Resolve(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.2", "127.0.0.3", "::1"}
	if r.Addresses() != len(want) {
		t.Fatalf("%d addresses, want %d", r.Addresses(), len(want))
	}
	for i, w := range want {
		if got := r.ip(i).String(); got != w {
			t.Errorf("address %d = %s, want %s", i, got, w)
		}
	}
	if answer[0].String() != "::1" || answer[2].String() != "::ffff:127.0.0.3" {
		t.Errorf("Resolve rewrote the lookup's answer: %v", answer)
	}

	for _, s := range []string{"127.0.0.1:80", "[::1]:80", "unix:/run/app.sock"} {
		a, _ := ParseTarget(s)
		if n := NewResolverFunc(a, nil).Addresses(); n != 1 {
			t.Errorf("%s: %d addresses, want 1", s, n)
		}
	}
}

// TestZeroResolverHasNothingToDial: neither the zero Resolver nor a nil
// one panics; both have no address and refuse to dial.
func TestZeroResolverHasNothingToDial(t *testing.T) {
	for _, r := range []*Resolver{new(Resolver), nil} {
		if n := r.Addresses(); n != 0 {
			t.Errorf("%d addresses, want 0", n)
		}
		if fd, _, err := r.DialAddress(0); err == nil || fd != -1 {
			t.Errorf("DialAddress = %d, %v; want an error", fd, err)
		}
		if err := r.Resolve(context.Background()); err == nil {
			t.Error("Resolve of no address succeeded")
		}
		r.KeepResolved(time.Millisecond, nil) // returns at once
		if r.String() != "" || r.Address() != (Address{}) {
			t.Errorf("address %q", r.String())
		}
	}
}
