package proxy

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// A reload that changes a service's settings but not its address hands the
// listening socket from the old Server to a new one, so that the address
// never stops accepting: connections waiting in the kernel's backlog are
// taken by whichever server accepts next, and the old server's open
// connections keep the settings they started with while it drains.
//
//	h, err := old.HandOver()
//	srv, err := proxy.New(proxy.Config{..., Inherit: h})
//	go srv.Serve(ctx)
//	old.Shutdown(ctx) // stops accepting; the socket stays open in srv

// Handover is a duplicate of a Server's listening socket, to be given to
// the Server replacing it as Config.Inherit.
type Handover struct {
	fd       int
	addr     net.Addr
	unixPath string
}

// HandOver duplicates the listening socket for the server that replaces
// this one. From then on this server's close leaves a unix socket file in
// place: it belongs to the new server.
func (s *Server) HandOver() (*Handover, error) {
	if s.draining.Load() {
		return nil, errors.New("proxy: the server has stopped listening")
	}
	fd, err := unix.FcntlInt(uintptr(s.ln.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("hand over %s: %w", s.ln.addr, err)
	}
	s.ln.keepFile.Store(true)
	return &Handover{fd: fd, addr: s.ln.addr, unixPath: s.ln.unixPath}, nil
}

// Close closes a Handover no Server took.
func (h *Handover) Close() {
	if h != nil && h.fd >= 0 {
		unix.Close(h.fd)
		h.fd = -1
	}
}

// listener makes the listener of the Server built on h; h is used up.
func (h *Handover) listener() (*listener, error) {
	if h == nil {
		return nil, nil
	}
	if h.fd < 0 {
		return nil, errors.New("proxy: listener handover used twice")
	}
	ln := &listener{fd: h.fd, addr: h.addr, unixPath: h.unixPath}
	h.fd = -1
	return ln, nil
}

// Discard closes a Server that New built but that never served, as when a
// reload fails after building it. A socket it inherited stays with the
// server that handed it over, unix socket file included.
func (s *Server) Discard() {
	if s.cfg.Inherit != nil {
		s.ln.keepFile.Store(true)
	}
	s.closeLoops()
	s.ln.close()
}

// StopAccepting stops the server accepting and returns once no loop will
// accept again, so that the server replacing it on a handed-over socket is
// the only one that takes new connections. Shutdown does this first too.
func (s *Server) StopAccepting() { s.stopListening() }
