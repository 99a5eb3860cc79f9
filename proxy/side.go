package proxy

import (
	"io"

	"golang.org/x/sys/unix"
)

// side is one socket of a connection and what epoll last said about it.
// Sockets are edge-triggered: readable and writable stay true until a call
// returns EAGAIN. read and write own that bookkeeping, so that every relay
// step sees the same four outcomes: bytes, would-block, EOF, failure.
type side struct {
	fd       int
	readable bool
	writable bool
	hup      bool // EPOLLRDHUP/EPOLLHUP seen: read until 0, never stop at a short read
	readEOF  bool
	shutWR   bool
}

// read reads into p. It returns n > 0 with a nil error; or 0 and io.EOF
// at the peer's FIN (readEOF is set); or 0 and nil when the socket would
// block (readable is cleared) or the call was interrupted (try again); or
// the failure. A short read clears readable too, unless a hangup was seen:
// then the socket is read until it says 0.
func (s *side) read(p []byte) (int, error) {
	n, err := unix.Read(s.fd, p)
	switch {
	case n > 0:
		if n < len(p) && !s.hup {
			s.readable = false
		}
		return n, nil
	case err == nil:
		s.readEOF = true
		return 0, io.EOF
	case err == unix.EAGAIN:
		s.readable = false
		return 0, nil
	case err == unix.EINTR:
		return 0, nil
	}
	return 0, err
}

// write writes p and returns how much the socket took (never negative)
// with a nil error, clearing writable when it would block; or the
// failure.
func (s *side) write(p []byte) (int, error) {
	n, err := unix.Write(s.fd, p)
	n = max(n, 0)
	switch err {
	case nil, unix.EINTR:
		return n, nil
	case unix.EAGAIN:
		s.writable = false
		return n, nil
	}
	return n, err
}
