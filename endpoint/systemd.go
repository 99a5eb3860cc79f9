package endpoint

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/coreos/go-systemd/v22/activation"
	"golang.org/x/sys/unix"
)

// systemdPrefix begins a listen address naming a socket passed by systemd:
// "systemd:NAME", NAME being the socket unit's FileDescriptorName=.
const systemdPrefix = "systemd:"

// maxFDName is systemd's limit on a FileDescriptorName=.
const maxFDName = 255

// parseSystemd parses "systemd:NAME".
func parseSystemd(s string) (Address, error) {
	name := strings.TrimPrefix(s, systemdPrefix)
	switch {
	case name == "":
		return Address{}, fmt.Errorf("%q: empty socket name (want systemd:NAME, NAME as in the socket unit's FileDescriptorName=)", s)
	case len(name) > maxFDName:
		return Address{}, fmt.Errorf("%q: socket name longer than %d bytes", s, maxFDName)
	case strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r > '~' || r == ':' }):
		return Address{}, fmt.Errorf("%q: a socket name is printable ASCII without spaces or ':'", s)
	}
	return Address{network: "systemd", addr: name}, nil
}

// SystemdName returns NAME of a "systemd:NAME" listen address, "" for
// other addresses.
func (a Address) SystemdName() string {
	if a.network == "systemd" {
		return a.addr
	}
	return ""
}

// inherited holds the sockets systemd passed to this process, taken once:
// activation.Files wraps each descriptor in an *os.File, and a second set
// of wrappers would close the same descriptors when collected. They stay
// open for the life of the process, so that a listener closed and opened
// again (a reload) finds its socket still there, and connections that
// arrive meanwhile wait in its backlog.
var inherited struct {
	once  sync.Once
	files []*os.File
}

// passedFiles returns the descriptors systemd passed (LISTEN_PID,
// LISTEN_FDS, LISTEN_FDNAMES), read on first use; the variables are then
// removed from the environment so that no child inherits them.
func passedFiles() []*os.File {
	inherited.once.Do(func() { inherited.files = activation.Files(true) })
	return inherited.files
}

// ErrNoSystemdSockets is returned by SystemdListener when this process was
// not started with sockets from systemd.
var ErrNoSystemdSockets = errors.New("no sockets passed by systemd (LISTEN_FDS and LISTEN_PID are not set for this process): start moat from a .socket unit, or under systemd-socket-activate")

// SystemdListener returns the listening socket systemd passed under name
// (the socket unit's FileDescriptorName=) as a listener of its own: a
// duplicate descriptor, so that closing it leaves systemd's socket open.
// Exactly one socket must carry the name, and it must be a listening
// stream socket (Accept=no).
func SystemdListener(name string) (net.Listener, error) {
	files := passedFiles()
	if len(files) == 0 {
		return nil, fmt.Errorf("systemd:%s: %w", name, ErrNoSystemdSockets)
	}
	var named []*os.File
	var names []string
	for _, f := range files {
		if f.Name() == name {
			named = append(named, f)
		}
		if !slices.Contains(names, f.Name()) {
			names = append(names, f.Name())
		}
	}
	switch len(named) {
	case 0:
		return nil, fmt.Errorf("systemd:%s: systemd passed no socket named %q (it passed %s)", name, name, strings.Join(names, ", "))
	case 1:
	default:
		return nil, fmt.Errorf("systemd:%s: systemd passed %d sockets named %q; moat takes one per --listen (give each ListenStream= its own FileDescriptorName=)", name, len(named), name)
	}
	if err := checkListening(named[0]); err != nil {
		return nil, fmt.Errorf("systemd:%s: %w", name, err)
	}
	ln, err := net.FileListener(named[0])
	if err != nil {
		return nil, fmt.Errorf("systemd:%s: %w", name, err)
	}
	return ln, nil
}

// checkListening refuses a passed descriptor that is not a stream socket
// in the listening state: a datagram socket, or a connection handed over
// by a socket unit with Accept=yes.
func checkListening(f *os.File) error {
	fd := int(f.Fd())
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fmt.Errorf("not a socket: %w", err)
	}
	if typ != unix.SOCK_STREAM {
		return errors.New("not a stream socket (use ListenStream= in the socket unit)")
	}
	if on, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || on == 0 {
		return errors.New("not a listening socket (the socket unit must have Accept=no)")
	}
	return nil
}

// BoundLocality judges where a bound listener listens, for addresses whose
// Locality is Inherited: a unix socket or a loopback IP is Local, the
// unspecified IP EveryAddress, any other IP NotLoopback.
func BoundLocality(a net.Addr) Locality {
	switch a := a.(type) {
	case *net.UnixAddr:
		return Local
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(a.IP)
		ip = ip.Unmap()
		switch {
		case !ok:
			return NotLoopback
		case ip.IsLoopback():
			return Local
		case ip.IsUnspecified():
			return EveryAddress
		}
	}
	return NotLoopback
}
