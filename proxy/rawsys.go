package proxy

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The loop's sockets are non-blocking, so read(2), write(2) and a
// zero-timeout epoll_wait(2) return at once. They are made as raw system
// calls: the ordinary wrappers tell the scheduler the goroutine may block,
// and with one P the runtime's monitor thread then takes the P away from
// any call that outlasts its 20 µs tick (a 64 KiB write to a loopback
// socket does) and keeps waking every 20 µs after each such hand-off. A raw
// call keeps the P; the cost is that nothing else runs on it for the
// length of one non-blocking call, which is what the loop does anyway.

func rawRead(fd int, p []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(bufPtr(p)), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

func rawWrite(fd int, p []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(bufPtr(p)), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}

// rawEpollPoll is epoll_wait(2) with a zero timeout.
func rawEpollPoll(epfd int, events []unix.EpollEvent) (int, error) {
	var ptr unsafe.Pointer
	if len(events) > 0 {
		ptr = unsafe.Pointer(&events[0])
	}
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(ptr), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func bufPtr(p []byte) unsafe.Pointer {
	if len(p) == 0 {
		return nil
	}
	return unsafe.Pointer(&p[0])
}
