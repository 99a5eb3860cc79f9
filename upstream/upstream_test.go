package upstream

import (
	"bytes"
	"context"
	"errors"
	"net"
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
		if err != nil || got.Network != c.network || got.Address != c.address || got.Port() != c.port {
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
		fd, inProgress, err := tgt.DialNonblocking()
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
	fd, inProgress, err := tgt.DialNonblocking()
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
	if err := tgt.Resolve(context.Background()); err != nil {
		t.Fatal(err)
	}
	sa, family, err := tgt.Sockaddr()
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
	if err != nil || got.Network != "tcp" || got.Address != ":8443" || got.Port() != 8443 {
		t.Fatalf("ParseListen(:8443) = %+v, %v", got, err)
	}
	for _, bad := range []string{":", ":x", ":99999", "8443"} {
		if _, err := ParseListen(bad); err == nil {
			t.Errorf("ParseListen(%q) accepted", bad)
		}
	}
	if got, err := ParseListen("unix:/run/moat.sock"); err != nil || got.Network != "unix" {
		t.Fatalf("ParseListen(unix:...) = %+v, %v", got, err)
	}
}
