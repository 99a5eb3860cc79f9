package cmd

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is an io.Writer the test can read while the sink writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func countDropped(w io.Writer, n int64) { fmt.Fprintf(w, "dropped %d\n", n) }

// TestLogSinkDeliversEveryLinePromptly: each line written alone comes out
// without waiting for a later one (no lost wake-up), many times over.
func TestLogSinkDeliversEveryLinePromptly(t *testing.T) {
	out := &lockedBuffer{}
	s := newLogSink(out, 16, countDropped)
	defer s.Close()
	for i := 0; i < 2000; i++ {
		line := fmt.Sprintf("line %d\n", i)
		s.Write([]byte(line))
		deadline := time.Now().Add(2 * time.Second)
		for !strings.HasSuffix(out.String(), line) {
			if time.Now().After(deadline) {
				t.Fatalf("line %d did not come out on its own", i)
			}
			time.Sleep(10 * time.Microsecond)
		}
	}
}

// blockingWriter blocks every Write until released.
type blockingWriter struct {
	release chan struct{}
	out     lockedBuffer
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	<-b.release
	return b.out.Write(p)
}

// TestLogSinkNeverBlocksAndCountsDrops: with the output stuck, Write still
// returns at once; what does not fit the queue is dropped and counted, and
// the rest comes out, in order, once the output moves again.
func TestLogSinkNeverBlocksAndCountsDrops(t *testing.T) {
	w := &blockingWriter{release: make(chan struct{})}
	s := newLogSink(w, 8, countDropped)
	done := make(chan struct{})
	go func() {
		for i := 0; i < 100; i++ {
			s.Write([]byte(fmt.Sprintf("line %d\n", i)))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Write blocked on a stuck output")
	}
	close(w.release)
	s.Close()
	got := w.out.String()
	kept := strings.Count(got, "line ")
	var dropped int
	fmt.Sscanf(got[strings.Index(got, "dropped "):], "dropped %d", &dropped)
	if kept+dropped != 100 || dropped == 0 {
		t.Fatalf("%d lines kept and %d counted as dropped, want 100 in all with some dropped:\n%s", kept, dropped, got)
	}
	if !strings.HasPrefix(got, "line 0\n") {
		t.Fatalf("the first line was not kept first:\n%s", got)
	}
	s.Write([]byte("after close\n"))
	if !strings.HasSuffix(w.out.String(), "after close\n") {
		t.Fatal("a line written after Close was lost")
	}
}
