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
		if reason := l.srv.admit(time.Now()); reason != "" {
			unix.Close(fd)
			l.srv.cfg.Observer.Refused(reason)
			l.logLimit("connection refused: "+refusalHelp[reason], nil)
			continue
		}
		l.srv.active.Add(1)
		l.newConn(fd, sa)
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

// logLimit logs a limit being hit at most once per second per loop, with
// the count since the last line, rather than once per connection.
func (l *loop) logLimit(msg string, err error) {
	l.limitRefused++
	now := time.Now()
	if now.Sub(l.lastLimitLog) < time.Second {
		return
	}
	ev := l.srv.cfg.Log.Warn().Int("count", l.limitRefused)
	if err != nil {
		ev = ev.Err(err)
	}
	ev.Msg(msg)
	l.lastLimitLog = now
	l.limitRefused = 0
}

// refusalHelp names the flag behind each refusal reason in the log.
var refusalHelp = map[string]string{
	"max-conns":      "--max-concurrent-conns reached",
	"max-handshakes": "--max-concurrent-handshakes reached",
	"handshake-rate": "--max-handshake-rate exceeded",
}
