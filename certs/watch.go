package certs

import (
	"context"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Watch latency. After the last filesystem event in a burst, Watch waits
// watchDebounce and then reloads, so new handshakes use rotated material
// about 100 ms (plus parse time, well under a millisecond for ordinary
// chains) after the files change. For a Kubernetes Secret this comes on top
// of the kubelet's own delay in updating the volume (up to its sync period
// plus cache TTL, about a minute by default), which moat cannot shorten.
// Without inotify, Watch polls every pollInterval; with it, it still checks
// every resyncInterval in case an event was missed (a file that is a symlink
// into a directory Watch does not see, for example). Checks compare a hash
// of the bytes, so they cost three small reads and log nothing when nothing
// changed.
const (
	watchDebounce  = 100 * time.Millisecond
	maxDebounce    = time.Second // a steady stream of events cannot postpone a reload forever
	pollInterval   = time.Second
	resyncInterval = 10 * time.Second
)

// watchMask is what we ask inotify about on each directory. Watching the
// directory, not the files, is what lets us see the Kubernetes Secret-volume
// swap: the kubelet renames a new ..data symlink over the old one
// (IN_MOVED_TO), and tls.crt itself, a symlink to ..data/tls.crt, never
// changes. IN_CLOSE_WRITE, IN_CREATE and IN_ATTR cover files edited in place,
// created, or having their mode fixed after a permission-denied failure.
const watchMask = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_CLOSE_WRITE | unix.IN_DELETE |
	unix.IN_ATTRIB | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF

// testHookWatching, when a test sets it, is called once Watch's inotify
// watches (or its polling) are in place and the first check is done, so a
// test changes files only after Watch can see the change.
var testHookWatching func(*Source)

// Watch reloads the Source whenever its files change, until ctx is done. Run
// it in its own goroutine. onReload (which may be nil) is called with nil
// after new material went into service, and with the error when changed
// files fail to load (the old material stays in service); the same bad
// content is reported once, and events that leave the content unchanged are
// not reported at all. If inotify is unavailable Watch polls instead.
func (s *Source) Watch(ctx context.Context, onReload func(err error)) {
	if s.static {
		<-ctx.Done()
		return
	}
	if onReload == nil {
		onReload = func(error) {}
	}
	for _, p := range s.more {
		go p.Watch(ctx, onReload)
	}
	if s.wl != nil {
		s.watchWorkload(ctx, onReload)
		return
	}
	watching := func() {
		if testHookWatching != nil {
			testHookWatching(s)
		}
	}
	watchFiles(ctx, s.dirs(), func() { s.check(onReload) }, watching)
}

// WatchFiles calls check whenever something changes in the directories
// holding files (a Kubernetes ConfigMap's ..data swap included), debounced,
// and every few seconds besides, until ctx is done: the watch certificates
// have, for other files moat reloads. check runs once at the start, and
// must itself tell a change from an event that changed nothing.
func WatchFiles(ctx context.Context, files []string, check func()) {
	watchFiles(ctx, dirsOf(files), check, func() {})
}

// watchFiles calls check whenever something changes in dirs, debounced,
// and every resync interval, until ctx is done. watching is called once the
// watches are in place and the first check is done.
func watchFiles(ctx context.Context, dirs []string, check, watching func()) {
	events := watchDirs(ctx, dirs)
	tick := resyncInterval
	if events == nil {
		tick = pollInterval
	}
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	var pendingSince time.Time

	// Files may have changed before the watches were in place.
	check()
	watching()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok { // watcher broke (a directory vanished): poll
				events = nil
				ticker.Reset(pollInterval)
				check()
				continue
			}
			if pendingSince.IsZero() {
				pendingSince = time.Now()
			}
			if time.Since(pendingSince) < maxDebounce {
				debounce.Reset(watchDebounce)
			}
		case <-debounce.C:
			pendingSince = time.Time{}
			check()
		case <-ticker.C:
			check()
		}
	}
}

// Check reloads if the content changed and tells onReload about new
// material or a new failure, as Watch does on each event: for a periodic
// reload on top of Watch.
func (s *Source) Check(onReload func(error)) { s.check(onReload) }

// check reloads if the content changed and tells onReload about new material
// or a new failure.
func (s *Source) check(onReload func(error)) {
	switch r := s.reload(); {
	case r.changed:
		onReload(nil)
	case r.err != nil && !r.repeat:
		onReload(r.err)
	}
}

// dirs is the set of directories holding the Source's files.
func (s *Source) dirs() []string { return dirsOf(s.files()) }

// dirsOf is the set of directories holding files.
func dirsOf(files []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range files {
		d := filepath.Dir(f)
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// watchDirs starts inotify on dirs and returns a channel that receives a
// value after events and is closed when the watch breaks. It returns nil if
// inotify cannot be set up, and the caller polls.
func watchDirs(ctx context.Context, dirs []string) <-chan struct{} {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil
	}
	for _, d := range dirs {
		if _, err := unix.InotifyAddWatch(fd, d, watchMask); err != nil {
			unix.Close(fd)
			return nil
		}
	}
	// A non-blocking fd makes os.File use the runtime poller, so Close from
	// another goroutine unblocks Read.
	f := os.NewFile(uintptr(fd), "inotify")
	events := make(chan struct{}, 1)
	go readInotify(f, events)
	go func() {
		<-ctx.Done()
		f.Close()
	}()
	return events
}

// readInotify turns inotify events into wake-ups on events, coalescing them
// (Watch re-reads everything anyway), and closes events when a watched
// directory goes away or the file is closed.
func readInotify(f *os.File, events chan<- struct{}) {
	defer close(events)
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		n, err := f.Read(buf)
		if err != nil {
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			if ev.Mask&(unix.IN_IGNORED|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF) != 0 {
				return
			}
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
		select {
		case events <- struct{}{}:
		default:
		}
	}
}
