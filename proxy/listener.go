package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-proxy/moat/endpoint"
)

// listener is one listening socket shared by every loop. Each loop watches
// it with EPOLLEXCLUSIVE, so an incoming connection wakes one loop. One
// socket (rather than SO_REUSEPORT copies) keeps "address already in use"
// an error, as a user expects from a second instance on the same port.
type listener struct {
	fd       int
	addr     net.Addr
	unixPath string
	keepFile atomic.Bool // the socket was handed over: leave the unix socket file
	once     sync.Once
}

// listen binds t with the standard library, for its address handling and
// errors, then keeps a non-blocking duplicate of the socket for epoll.
func listen(t endpoint.Address, mode uint32) (*listener, error) {
	if t.Network() == "unix" {
		if fi, err := os.Lstat(t.Path()); err == nil && fi.Mode()&os.ModeSocket != 0 {
			// A socket file left by a previous run; refuse if something
			// still answers on it.
			if c, err := net.Dial("unix", t.Path()); err == nil {
				c.Close()
				return nil, fmt.Errorf("listen unix:%s: address already in use", t.Path())
			}
			os.Remove(t.Path())
		}
	}
	if t.Network() == "unix" && mode != 0 {
		// Create the socket file with the requested mode from the start: a
		// chmod after listen(2) would leave a moment when clients that the
		// mode excludes could connect.
		old := unix.Umask(0o777 &^ int(mode))
		defer unix.Umask(old)
	}
	nl, err := bind(t)
	if err != nil {
		return nil, err
	}
	defer nl.Close()
	ln := &listener{addr: nl.Addr()}
	if ul, ok := nl.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
		ln.unixPath = t.Path()
		if mode != 0 {
			if err := os.Chmod(t.Path(), os.FileMode(mode)); err != nil {
				os.Remove(t.Path())
				return nil, fmt.Errorf("listen unix:%s: %w", t.Path(), err)
			}
		}
	}
	sc, err := nl.(interface {
		SyscallConn() (syscall.RawConn, error)
	}).SyscallConn()
	if err != nil {
		return nil, err
	}
	var dupErr error
	err = sc.Control(func(fd uintptr) {
		ln.fd, dupErr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	})
	if err == nil {
		err = dupErr
	}
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", t, err)
	}
	if err := unix.SetNonblock(ln.fd, true); err != nil {
		unix.Close(ln.fd)
		return nil, fmt.Errorf("listen %s: %w", t, err)
	}
	return ln, nil
}

// bind opens the listening socket of t: a new one, or for "systemd:NAME"
// a duplicate of the one systemd passed, which then serves exactly as a
// socket moat bound itself.
func bind(t endpoint.Address) (net.Listener, error) {
	if name := t.SystemdName(); name != "" {
		return endpoint.SystemdListener(name)
	}
	return net.Listen(t.Network(), t.NetAddress())
}

// close closes the socket once; a unix socket file is removed.
func (ln *listener) close() {
	ln.once.Do(func() {
		unix.Close(ln.fd)
		if ln.unixPath != "" && !ln.keepFile.Load() {
			os.Remove(ln.unixPath)
		}
	})
}

// acceptOne accepts a connection as a non-blocking socket, with
// TCP_NODELAY on TCP.
func (ln *listener) acceptOne() (int, unix.Sockaddr, error) {
	fd, sa, err := unix.Accept4(ln.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	if err != nil {
		return -1, nil, err
	}
	if isInet(sa) {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
	return fd, sa, nil
}

// isInet reports whether sa is a TCP peer (not a unix socket).
func isInet(sa unix.Sockaddr) bool {
	switch sa.(type) {
	case *unix.SockaddrInet4, *unix.SockaddrInet6:
		return true
	}
	return false
}

// setKeepAlive turns on TCP keepalive on fd as Config.KeepAlive describes.
// A unix socket refuses the options, which is harmless.
func setKeepAlive(fd int, d time.Duration) {
	if d <= 0 {
		return
	}
	idle := max(1, int(d/time.Second))
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, idle)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, max(1, idle/3))
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 3)
}

// sockaddrString formats a peer address for logs.
func sockaddrString(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return (&net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}).String()
	case *unix.SockaddrInet6:
		return (&net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}).String()
	case *unix.SockaddrUnix:
		if a.Name == "" {
			return "unix"
		}
		return "unix:" + a.Name
	}
	return "unknown"
}

// sockaddrAddrPort converts an IP socket address; unix sockets give the
// zero AddrPort.
func sockaddrAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	return netip.AddrPort{}
}
