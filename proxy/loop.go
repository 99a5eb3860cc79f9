package proxy

import (
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// loop is one epoll event loop. It owns its connections outright: every
// engine call, socket call and timer for a connection happens on the loop's
// goroutine, so connection state needs no locks. Other goroutines reach a
// loop only through post.
type loop struct {
	srv   *Server
	epfd  int
	evfd  int // eventfd that wakes the loop for posted tasks
	conns map[int]*conn
	timer timerHeap
	ready []*conn // connections that spent their budget with work left
	// closing holds sockets closed during this batch of events. They are
	// closed after it, so that a later event of the batch for the same fd
	// number cannot reach a new socket that reused it.
	closing []int

	scratch []byte    // one plaintext batch, shared by the loop's connections
	now     time.Time // when epoll_wait last returned; activity stamps use it

	mu     sync.Mutex
	tasks  []func()
	exited bool // run returned: post refuses, nothing would run the task

	accepting    bool
	acceptPaused time.Time // zero, or when to retry after EMFILE
	stopped      bool
	limits       limitLog
}

const epollConnEvents = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET

func newLoop(s *Server) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	l := &loop{srv: s, epfd: epfd, evfd: evfd, conns: make(map[int]*conn), scratch: make([]byte, s.budget.batch())}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(evfd)}); err != nil {
		l.close()
		return nil, err
	}
	ev := &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: int32(s.ln.fd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, s.ln.fd, ev); err != nil {
		l.close()
		return nil, err
	}
	l.accepting = true
	return l, nil
}

func (l *loop) close() {
	unix.Close(l.epfd)
	unix.Close(l.evfd)
}

// post runs f on the loop's goroutine and reports true, or reports false
// when the loop has exited and f will never run. It never blocks. The
// eventfd is written under the lock, so it cannot be written after the
// loop exited and its descriptors were closed.
func (l *loop) post(f func()) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.exited {
		return false
	}
	l.tasks = append(l.tasks, f)
	var one = [8]byte{1}
	unix.Write(l.evfd, one[:])
	return true
}

// exit marks the loop exited and runs the tasks posted before that, so
// that whoever waits for them is answered.
func (l *loop) exit() {
	l.mu.Lock()
	l.exited = true
	tasks := l.tasks
	l.tasks = nil
	l.mu.Unlock()
	for _, f := range tasks {
		f()
	}
}

func (l *loop) runTasks() {
	var buf [8]byte
	unix.Read(l.evfd, buf[:])
	l.mu.Lock()
	tasks := l.tasks
	l.tasks = nil
	l.mu.Unlock()
	for _, f := range tasks {
		f()
	}
}

// run is the loop: wait for readiness or the next deadline, dispatch, fire
// timers, until the server stops it and no connection is left.
func (l *loop) run() {
	defer l.exit()
	events := make([]unix.EpollEvent, 256)
	for !(l.stopped && len(l.conns) == 0) {
		wait := l.waitMillis(time.Now())
		if len(l.ready) > 0 {
			wait = 0
		}
		n, err := unix.EpollWait(l.epfd, events, wait)
		l.now = time.Now()
		if err != nil && err != unix.EINTR {
			l.srv.cfg.Log.Error().Err(err).Msg("epoll_wait failed; event loop stops")
			l.closeAllAndStop()
			l.closeDeferred()
			return
		}
		for i := 0; i < n; i++ {
			l.dispatch(int(events[i].Fd), events[i].Events)
		}
		l.runAgain()
		now := l.now
		l.fireTimers(now)
		l.flushLimitLog(now)
		l.closeDeferred()
		if !l.acceptPaused.IsZero() && !now.Before(l.acceptPaused) {
			l.resumeAccepting()
		}
	}
}

// dispatch routes one epoll event. The listener's fd number is only the
// listener's while this loop accepts: once every loop has stopped accepting
// the listener is closed, and the next socket a loop opens (an upstream
// dial) may reuse the number; its events belong to that connection.
func (l *loop) dispatch(fd int, events uint32) {
	switch {
	case fd == l.evfd:
		l.runTasks()
	case l.accepting && fd == l.srv.ln.fd:
		if l.acceptPaused.IsZero() {
			l.accept()
		}
	default:
		if c := l.conns[fd]; c != nil {
			c.onEvent(fd, events)
		}
	}
}

// closeLater closes fd once the current batch of events is handled.
func (l *loop) closeLater(fd int) { l.closing = append(l.closing, fd) }

func (l *loop) closeDeferred() {
	for _, fd := range l.closing {
		unix.Close(fd)
	}
	l.closing = l.closing[:0]
}

// again queues c to run once more after the current events.
func (l *loop) again(c *conn) {
	if !c.queued {
		c.queued = true
		l.ready = append(l.ready, c)
	}
}

// runAgain gives each queued connection another budget, in turn with the
// connections that had events.
func (l *loop) runAgain() {
	ready := l.ready
	l.ready = nil
	for i, c := range ready {
		ready[i] = nil
		c.queued = false
		c.run()
	}
	if l.ready == nil {
		l.ready = ready[:0]
	}
}

// waitMillis is the epoll_wait timeout: until the next deadline, or forever.
func (l *loop) waitMillis(now time.Time) int {
	next, ok := l.timer.next()
	if !l.acceptPaused.IsZero() && (!ok || l.acceptPaused.Before(next)) {
		next, ok = l.acceptPaused, true
	}
	if due, pending := l.limitLogDue(); pending && (!ok || due.Before(next)) {
		next, ok = due, true
	}
	if !ok {
		return -1
	}
	d := next.Sub(now)
	if d <= 0 {
		return 0
	}
	return int((d + time.Millisecond - 1) / time.Millisecond)
}

func (l *loop) fireTimers(now time.Time) {
	for {
		c := l.timer.expired(now)
		if c == nil {
			return
		}
		c.onDeadline(now)
	}
}

// add registers a socket of c with the loop.
func (l *loop) add(fd int, c *conn) error {
	ev := &unix.EpollEvent{Events: epollConnEvents, Fd: int32(fd)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, ev); err != nil {
		return err
	}
	l.conns[fd] = c
	return nil
}

// remove forgets a socket; closing the fd takes it out of epoll.
func (l *loop) remove(fd int) { delete(l.conns, fd) }

// stopAccepting takes the shared listener out of this loop.
func (l *loop) stopAccepting() {
	if l.accepting {
		l.accepting = false
		if l.acceptPaused.IsZero() { // a paused listener is already out
			unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, l.srv.ln.fd, nil)
		}
	}
}

// closeAllAndStop closes every connection and lets run return.
func (l *loop) closeAllAndStop() {
	l.stopAccepting()
	l.stopped = true
	seen := make(map[*conn]bool, len(l.conns))
	for _, c := range l.conns {
		if !seen[c] {
			seen[c] = true
			c.end(ReasonShutdown, errClosedByShutdown)
		}
	}
}
