package proxy

import (
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// poller is a loop's epoll instance, waited on through the Go runtime's
// own poller rather than in a blocking epoll_wait(2).
//
// A goroutine blocked in a raw system call keeps its P in the syscall
// state. With one CPU (GOMAXPROCS=1, the usual sidecar limit) nothing else
// can run, so the runtime's monitor thread takes the P away after 20 µs,
// hands it to another thread, and keeps polling every 20 µs because it
// just found work: under load that was a tenth of the proxy's CPU in
// nanosleep, futex wake-ups and context switches. An epoll descriptor is
// itself pollable (readable while events are pending), so the loop asks
// for events without blocking and, when there are none, parks its
// goroutine in the runtime's poller until the descriptor is readable or
// the deadline passes. The thread then sleeps in the runtime's own
// epoll_wait, and the monitor thread sleeps too.
type poller struct {
	epfd     int
	file     *os.File        // epfd, registered with the runtime poller
	raw      syscall.RawConn // nil: fall back to blocking epoll_wait
	deadline time.Time       // the read deadline set on file
}

func newPoller() (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	p := &poller{epfd: epfd}
	// O_NONBLOCK means nothing to epoll_wait itself; it tells os.NewFile
	// that the descriptor can be registered with the runtime poller.
	if unix.SetNonblock(epfd, true) != nil {
		return p, nil
	}
	p.file = os.NewFile(uintptr(epfd), "epoll")
	if raw, err := p.file.SyscallConn(); err == nil {
		p.raw = raw
	}
	return p, nil
}

// wait fills events and returns how many there are, waiting up to millis
// milliseconds (-1: until an event). 0 events means the wait timed out.
func (p *poller) wait(events []unix.EpollEvent, millis int) (int, error) {
	if p.raw == nil {
		return unix.EpollWait(p.epfd, events, millis)
	}
	n, err := rawEpollPoll(p.epfd, events)
	if n != 0 || (err != nil && err != unix.EINTR) || millis == 0 {
		return n, err
	}
	var deadline time.Time
	if millis > 0 {
		deadline = time.Now().Add(time.Duration(millis) * time.Millisecond)
	}
	if !deadline.Equal(p.deadline) {
		if p.file.SetReadDeadline(deadline) == nil {
			p.deadline = deadline
		}
	}
	n, err = 0, nil
	rerr := p.raw.Read(func(uintptr) bool {
		n, err = rawEpollPoll(p.epfd, events)
		return n != 0 || (err != nil && err != unix.EINTR)
	})
	if n == 0 && err == nil && rerr != nil && !os.IsTimeout(rerr) {
		// The runtime poller refused (closed descriptor): wait the old way.
		return unix.EpollWait(p.epfd, events, millis)
	}
	return n, err
}

func (p *poller) close() {
	if p.file != nil {
		p.file.Close()
		return
	}
	unix.Close(p.epfd)
}
