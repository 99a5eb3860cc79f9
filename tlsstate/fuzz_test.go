package tlsstate

import (
	"crypto/tls"
	"errors"
	"fmt"
	"testing"
	"time"
)

// outputBound is what a server engine may owe its peer at most while it is
// only fed bytes: a certificate flight of the small test chain plus alerts.
const outputBound = 16 << 10

// FuzzServerEngine feeds arbitrary bytes to a server engine, in chunks whose
// sizes come from the first two bytes. The engine must never panic or block,
// must keep Output bounded, and must end Failed once the input ends.
func FuzzServerEngine(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 22, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Add([]byte("\x07\x00GET / HTTP/1.1\r\nHost: moat\r\n\r\n"))
	p := testPKI(f)
	srvCfg, _ := p.configs(tls.VersionTLS13, p.small, false)
	srvCfg.MinVersion = tls.VersionTLS12
	f.Fuzz(func(t *testing.T, data []byte) {
		watchdog := time.AfterFunc(10*time.Second, func() {
			panic(fmt.Sprintf("engine blocked on input % x", data))
		})
		defer watchdog.Stop()
		e := Server(srvCfg, Options{})
		defer e.Close()
		for i, chunk := range fuzzChunks(data) {
			if i%2 == 0 {
				e.Feed(chunk)
			} else {
				e.Commit(copy(e.InputSpace(), chunk))
			}
			fuzzStep(t, e)
		}
		e.FeedEOF()
		fuzzStep(t, e)
		if errors.Is(e.Err(), ErrPanic) {
			t.Fatalf("panic inside the engine: %v", e.Err())
		}
		if e.State() != Failed || e.Err() == nil {
			t.Fatalf("after EOF: state=%v err=%v, want Failed", e.State(), e.Err())
		}
		e.Close()
		if e.bio.wk != nil || e.bio.in != nil {
			t.Fatal("Close left a worker or an input buffer")
		}
	})
}

// fuzzChunks splits data[2:] into chunks alternating between two sizes
// picked by data[0] (1..256 bytes) and data[1] (1 byte to 64 KiB).
func fuzzChunks(data []byte) [][]byte {
	if len(data) < 2 {
		return [][]byte{data}
	}
	sizes := [2]int{1 + int(data[0]), 1 + int(data[1])<<8}
	var chunks [][]byte
	for rest, i := data[2:], 0; len(rest) > 0; i++ {
		n := min(len(rest), sizes[i%2])
		chunks, rest = append(chunks, rest[:n]), rest[n:]
	}
	return chunks
}

// fuzzStep lets the engine take what it was fed, as an event loop would:
// Read (which drives the handshake), a Write attempt, then a flush.
func fuzzStep(t *testing.T, e *Engine) {
	buf := make([]byte, 512)
	for range 4 {
		if _, err := e.Read(buf); err != nil {
			break
		}
	}
	if n, err := e.Write([]byte("x")); n != 0 || err == nil {
		t.Fatalf("Write before a handshake = %d, %v", n, err)
	}
	if e.Pending() > outputBound {
		t.Fatalf("Output grew to %d bytes", e.Pending())
	}
	if e.Buffered() > inputCap+outputBound {
		t.Fatalf("Buffered = %d", e.Buffered())
	}
	e.Consume(e.Pending())
}
