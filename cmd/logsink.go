package cmd

import (
	"io"
	"sync"
	"sync/atomic"
)

// logSink decouples the goroutines that log (the event loops among them)
// from stderr: Write queues a copy of the line and returns at once, and one
// goroutine writes the queue out. A stderr that stops draining (a stuck log
// collector) therefore cannot stall a connection. When the queue is full the
// line is dropped and counted; the count is written out, through dropped,
// after the line being written when the drops happened.
type logSink struct {
	w       io.Writer
	dropped func(w io.Writer, n int64)
	lines   chan []byte
	lost    atomic.Int64
	done    chan struct{}

	mu     sync.RWMutex // Write holds it shared, Close exclusively
	closed bool
}

func newLogSink(w io.Writer, queue int, dropped func(io.Writer, int64)) *logSink {
	s := &logSink{w: w, dropped: dropped, lines: make(chan []byte, queue), done: make(chan struct{})}
	go s.drain()
	return s
}

// Write queues a copy of p (the logger reuses p) and never blocks. After
// Close it writes straight through.
func (s *logSink) Write(p []byte) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return s.w.Write(p)
	}
	select {
	case s.lines <- append([]byte(nil), p...):
	default:
		s.lost.Add(1)
	}
	return len(p), nil
}

func (s *logSink) drain() {
	defer close(s.done)
	for line := range s.lines {
		s.w.Write(line)
		s.reportLost()
	}
}

func (s *logSink) reportLost() {
	if n := s.lost.Swap(0); n > 0 {
		s.dropped(s.w, n)
	}
}

// Close writes out every queued line and waits until it is written.
func (s *logSink) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.lines)
	s.mu.Unlock()
	<-s.done
}
