package endpoint

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// DialAddress starts connecting to address i of the resolver (see
// Addresses) on a new non-blocking socket: a connect refused by one address
// of a host name goes on to the next, as net.Dial does. When inProgress is
// true the caller waits for the socket to become writable and then calls
// FinishDial. TCP sockets get TCP_NODELAY, since moat relays whatever
// arrives at once and batching is the peers' business.
func (r *Resolver) DialAddress(i int) (fd int, inProgress bool, err error) {
	if r.Address().network == "" {
		return -1, false, fmt.Errorf("dial: %w", errNoAddress)
	}
	sa, family, err := r.sockaddr(i)
	if err != nil {
		return -1, false, fmt.Errorf("dial %s: %w", r, err)
	}
	fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, false, fmt.Errorf("dial %s: socket: %w", r, err)
	}
	if family != unix.AF_UNIX {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
	switch err = unix.Connect(fd, sa); err {
	case nil:
		return fd, false, nil
	case unix.EINPROGRESS:
		return fd, true, nil
	default:
		unix.Close(fd)
		return -1, false, fmt.Errorf("dial %s: %w", r, err)
	}
}

// sockaddr returns address i of the resolver (see Addresses).
func (r *Resolver) sockaddr(i int) (unix.Sockaddr, int, error) {
	return r.addr.sockaddr(r.ip(i))
}

// FinishDial reports the outcome of a connect that was in progress, once
// the socket has become writable.
func FinishDial(fd int) error {
	soErr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if soErr != 0 {
		return unix.Errno(soErr)
	}
	return nil
}
