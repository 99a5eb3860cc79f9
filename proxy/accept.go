package proxy

import (
	"time"

	"golang.org/x/sys/unix"
)

// acceptBatch bounds the accepts one wakeup does, so that a flood of new
// connections cannot starve the loop's established ones.
const acceptBatch = 64

// acceptPause is how long a loop stops accepting after running out of file
// descriptors; the listener is level-triggered, so without a pause the loop
// would spin on EMFILE.
const acceptPause = 100 * time.Millisecond

// accept takes new connections off the shared listener.
func (l *loop) accept() {
	for i := 0; i < acceptBatch && l.accepting; i++ {
		fd, sa, err := l.srv.ln.acceptOne()
		switch {
		case err == unix.EAGAIN:
			return
		case isTemporaryAcceptErr(err):
			continue
		case err == unix.EMFILE || err == unix.ENFILE || err == unix.ENOBUFS || err == unix.ENOMEM:
			l.pauseAccepting()
			l.logLimit("accept paused: out of file descriptors or memory", err)
			return
		case err != nil:
			l.pauseAccepting()
			l.logLimit("accept failed", err)
			return
		}
		l.newConn(fd, sa)
	}
}

// refuse closes an accepted socket that a limit does not let in.
func (l *loop) refuse(fd int, limit Limit) {
	unix.Close(fd)
	l.srv.cfg.Observer.Refused(limit)
	msg := "connection refused: " + l.srv.cfg.explain(limit)
	if limit == LimitHandshakes || limit == LimitHandshakesPerSource {
		msg += " and every handshake it counts has had its ClientHello answered"
	}
	l.logLimit(msg, nil)
}

// evictAll asks the loops of the victims to close them. A victim is
// closed by its own loop, which owns it; the guard has already given its
// slot and its memory back.
func (l *loop) evictAll(victims []*shake) {
	for _, v := range victims {
		v.c.l.post(func() { v.c.evict(v) })
	}
}

// pauseAccepting takes the listener out of the loop's epoll set for
// acceptPause. It must leave the set: the listener is level-triggered, so
// while connections wait in its backlog epoll_wait would return at once,
// and the loop would spin.
func (l *loop) pauseAccepting() {
	l.acceptPaused = time.Now().Add(acceptPause)
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, l.srv.ln.fd, nil)
}

// resumeAccepting puts the listener back after a pause and accepts what
// waited meanwhile.
func (l *loop) resumeAccepting() {
	l.acceptPaused = time.Time{}
	if !l.accepting {
		return
	}
	ev := &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: int32(l.srv.ln.fd)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, l.srv.ln.fd, ev); err != nil {
		l.srv.cfg.Log.Error().Err(err).Msg("cannot watch the listener again; this loop stops accepting")
		l.accepting = false
		return
	}
	l.accept()
}

// limitLogEvery is how often a loop may log that a limit was hit.
const limitLogEvery = time.Second

// limitLog rate-limits the lines about limits being hit: at most one per
// message per limitLogEvery per loop, each with the count since the line
// before. What a burst leaves unlogged is flushed by the loop once the
// interval is over, so the tail of a burst is reported too.
type limitLog struct {
	last    time.Time
	pending []limitLine // one per message, in the order first hit
}

type limitLine struct {
	msg   string
	err   error
	count int
}

// logLimit records a limit being hit and logs it unless a line went out
// less than limitLogEvery ago.
func (l *loop) logLimit(msg string, err error) {
	ll := &l.limits
	i := 0
	for i < len(ll.pending) && ll.pending[i].msg != msg {
		i++
	}
	if i == len(ll.pending) {
		ll.pending = append(ll.pending, limitLine{msg: msg})
	}
	ll.pending[i].count++
	ll.pending[i].err = err
	l.flushLimitLog(time.Now())
}

// flushLimitLog writes the pending lines once the interval allows it.
func (l *loop) flushLimitLog(now time.Time) {
	ll := &l.limits
	if len(ll.pending) == 0 || now.Sub(ll.last) < limitLogEvery {
		return
	}
	for _, p := range ll.pending {
		ev := l.srv.cfg.Log.Warn().Int("count", p.count)
		if p.err != nil {
			ev = ev.Err(p.err)
		}
		ev.Msg(p.msg)
	}
	ll.last, ll.pending = now, ll.pending[:0]
}

// limitLogDue is when flushLimitLog has a line to write, if it has one.
func (l *loop) limitLogDue() (time.Time, bool) {
	if len(l.limits.pending) == 0 {
		return time.Time{}, false
	}
	return l.limits.last.Add(limitLogEvery), true
}
