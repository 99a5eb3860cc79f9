package runner

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"
)

// notifier tells the service manager what the process is doing, through
// the sd_notify protocol: systemd gives a Type=notify service a datagram
// socket in NOTIFY_SOCKET. Without NOTIFY_SOCKET, or when Options.Notify
// is off, every call does nothing.
//
// The messages follow the service's life: READY=1 once every service
// accepts; RELOADING=1 (with the monotonic time systemd wants) and READY=1
// again around a reload; STOPPING=1 when a shutdown begins; and WATCHDOG=1
// at half the interval of WATCHDOG_USEC.
type notifier struct {
	on     bool
	log    zerolog.Logger
	warned atomic.Bool // a send failed and was logged; later failures are not
}

func newNotifier(on bool, log zerolog.Logger) *notifier {
	return &notifier{on: on, log: log}
}

func (n *notifier) ready()    { n.send(daemon.SdNotifyReady + "\nSTATUS=serving") }
func (n *notifier) stopping() { n.send(daemon.SdNotifyStopping + "\nSTATUS=draining open connections") }
func (n *notifier) reloading() {
	n.send(daemon.SdNotifyReloading + "\n" + daemon.SdNotifyMonotonicUsec())
}

// send delivers one message. A failure is logged once: the service manager
// may be gone or restarting, and the proxy goes on serving regardless.
func (n *notifier) send(state string) {
	if !n.on {
		return
	}
	if _, err := daemon.SdNotify(false, state); err != nil && !n.warned.Swap(true) {
		n.log.Warn().Err(err).Msg("cannot notify systemd (NOTIFY_SOCKET); going on without it")
	}
}

// Alive is what a Server may offer the watchdog: whether it still makes
// progress (*proxy.Server: every event loop answers). A Server without it
// is taken as alive.
type Alive interface {
	Alive(ctx context.Context) bool
}

// keepWatchdog sends WATCHDOG=1 at half the interval systemd asked for in
// WATCHDOG_USEC (for this process: WATCHDOG_PID), until ctx ends, as long
// as every service that can tell is alive: a wedged event loop stops the
// pings, and systemd restarts moat (WatchdogSec=, Restart=). Without a
// watchdog it returns at once.
func (n *notifier) keepWatchdog(ctx context.Context, services func() []Service) {
	if !n.on {
		return
	}
	every, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		n.log.Warn().Err(err).Msg("ignoring systemd's watchdog settings")
		return
	}
	if every <= 0 {
		return
	}
	go pingWatchdog(ctx, n, every/2, services)
}

// pingWatchdog is keepWatchdog's goroutine; a named function, so that stack
// dumps say what it is.
func pingWatchdog(ctx context.Context, n *notifier, every time.Duration, services func() []Service) {
	t := time.NewTicker(every)
	defer t.Stop()
	stalled := false
	for {
		if alive(ctx, services(), every) {
			if stalled {
				n.log.Info().Msg("event loops answer again; pinging the systemd watchdog")
			}
			stalled = false
			n.send(daemon.SdNotifyWatchdog)
		} else if ctx.Err() == nil && !stalled {
			stalled = true
			n.log.Error().Dur("within", every).Msg("an event loop did not answer; not pinging the systemd watchdog")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// alive asks every service that can tell whether it makes progress,
// allowing it d to answer.
func alive(ctx context.Context, services []Service, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for _, s := range services {
		if a, ok := s.Server.(Alive); ok && !a.Alive(ctx) {
			return false
		}
	}
	return true
}
