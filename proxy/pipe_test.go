package proxy

import (
	"bytes"
	"testing"
)

const pipeLimit = 64 << 10

// TestPipeParksOnlyWhatTheSinkRefused checks the backpressure accounting:
// no room while anything is parked, room again once it drains, and no
// buffer held while empty.
func TestPipeParksOnlyWhatTheSinkRefused(t *testing.T) {
	p := pipe{limit: pipeLimit}
	if p.Room() != pipeLimit || p.buf != nil {
		t.Fatalf("empty pipe: room %d, buffer held %v", p.Room(), p.buf != nil)
	}
	src := []byte("0123456789")
	p.Park(src[4:])
	src[5] = 'X' // Park copied
	if p.Room() != 0 || string(p.Backlog()) != "456789" {
		t.Fatalf("after park: room %d backlog %q", p.Room(), p.Backlog())
	}
	p.Consume(4)
	if p.Room() != 0 || string(p.Backlog()) != "89" {
		t.Fatalf("partly drained: room %d backlog %q", p.Room(), p.Backlog())
	}
	p.Consume(2)
	if p.Room() != pipeLimit || p.buf != nil || p.Len() != 0 {
		t.Fatalf("drained: room %d, buffer held %v", p.Room(), p.buf != nil)
	}
	p.Park(bytes.Repeat([]byte("x"), pipeLimit)) // a full window fits
	p.Free()
	if p.Len() != 0 || p.buf != nil {
		t.Fatalf("freed: len %d, buffer held %v", p.Len(), p.buf != nil)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("parking more than Room did not panic")
		}
	}()
	p.Park(make([]byte, pipeLimit+1))
}

// TestPipeClosedAfterData: a closed pipe still delivers its backlog, and
// only then is it drained, the moment the sink gets EOF.
func TestPipeClosedAfterData(t *testing.T) {
	p := pipe{limit: pipeLimit}
	p.Park([]byte("tail"))
	p.CloseWrite()
	if p.Drained() || p.Room() != 0 {
		t.Fatal("a closed pipe with a backlog reports drained or room")
	}
	p.Consume(4)
	if !p.Drained() {
		t.Fatal("closed and empty pipe is not drained: the sink would never get EOF")
	}
}
