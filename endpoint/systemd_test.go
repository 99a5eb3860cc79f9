package endpoint

import (
	"net"
	"strings"
	"testing"
)

// TestParseSystemdListen: "systemd:NAME" names a passed socket; an empty,
// overlong or unprintable name is refused, and targets never take it.
func TestParseSystemdListen(t *testing.T) {
	a, err := ParseListen("systemd:moat-https")
	if err != nil {
		t.Fatal(err)
	}
	if a.SystemdName() != "moat-https" || a.String() != "systemd:moat-https" || a.Network() != "systemd" || a.Locality() != Inherited {
		t.Fatalf("parsed %+v", a)
	}
	for _, bad := range []string{"systemd:", "systemd:a b", "systemd:a:b", "systemd:" + strings.Repeat("n", 256), "systemd:\x00"} {
		if _, err := ParseListen(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
	if _, err := ParseTarget("systemd:moat"); err == nil {
		t.Error("a target took systemd:NAME")
	}
	if a, _ := ParseListen("127.0.0.1:1"); a.SystemdName() != "" {
		t.Error("a TCP address has a systemd name")
	}
}

// TestSystemdListenerOutsideActivation: without LISTEN_FDS the error says
// how to start moat.
func TestSystemdListenerOutsideActivation(t *testing.T) {
	t.Setenv("LISTEN_FDS", "")
	if _, err := SystemdListener("moat"); err == nil || !strings.Contains(err.Error(), "systemd-socket-activate") {
		t.Fatalf("got %v", err)
	}
}

func TestBoundLocality(t *testing.T) {
	for _, tc := range []struct {
		a    net.Addr
		want Locality
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 1}, Local},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 1}, Local},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 1}, EveryAddress},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 1}, EveryAddress},
		{&net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1}, NotLoopback},
		{&net.UnixAddr{Name: "/run/x.sock", Net: "unix"}, Local},
	} {
		if got := BoundLocality(tc.a); got != tc.want {
			t.Errorf("%v: %v, want %v", tc.a, got, tc.want)
		}
	}
}
