package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"
)

// attackNames lists the attacks in report order; -attacks picks among them.
var attackNames = []string{"silent", "partial", "capfill", "status", "bigcert", "badsni", "slowreader"}

// buildAttacks turns the configuration into the attacks to run.
func buildAttacks(cfg soakConfig) []*attack {
	all := map[string]*attack{
		// 1. TCP connections to the TLS port that never send a byte.
		"silent": {slots: cfg.silent, source: loopback(10), play: playSilent, pause: 100 * time.Millisecond},
		// 2. The first 100 bytes of a real ClientHello, then nothing.
		"partial": {slots: cfg.partial, source: loopback(20), play: playPartial, pause: 100 * time.Millisecond},
		// 3. 1 and 2 alternating, all from one source address.
		"capfill": {slots: cfg.capFill, source: oneAddress(net.IPv4(127, 30, 0, 1)), play: playCapFill, pause: 100 * time.Millisecond},
		// 4. Slow endless headers and 1 MiB headers to the status port.
		"status": {slots: cfg.statusSlow + cfg.statusHuge, status: true, source: loopback(40), play: statusPlay(cfg.statusSlow), pause: 100 * time.Millisecond},
		// 5. A real TLS 1.3 handshake that stalls inside a ~250 KiB client Certificate.
		"bigcert": {slots: cfg.bigCert, source: loopback(50), play: playBigCert, pause: 100 * time.Millisecond},
		// 6. ClientHellos with a 60,000-byte server name and with a NUL in it.
		"badsni": {slots: cfg.badSNI, source: loopback(60), play: playBadSNI, pause: 50 * time.Millisecond},
		// 7. mTLS, then a firehose download read one byte every few seconds.
		"slowreader": {slots: cfg.slowReader, source: loopback(70), play: playSlowReader, pause: time.Second},
	}
	var out []*attack
	for _, name := range attackNames {
		if cfg.attacks[name] && all[name].slots > 0 {
			a := all[name]
			a.name = name
			out = append(out, a)
		}
	}
	return out
}

func playSilent(_ context.Context, _ *soakEnv, _ int, c net.Conn, _ *attackStats) {
	waitClosed(c)
}

// partialHelloBytes is how much of the ClientHello the partial attack sends.
const partialHelloBytes = 100

func playPartial(_ context.Context, e *soakEnv, _ int, c net.Conn, st *attackStats) {
	if _, err := c.Write(e.hello[:partialHelloBytes]); err != nil {
		st.outcome("write: " + errorClass(err))
		return
	}
	waitClosed(c)
}

func playCapFill(ctx context.Context, e *soakEnv, slot int, c net.Conn, st *attackStats) {
	if slot%2 == 0 {
		playSilent(ctx, e, slot, c, st)
	} else {
		playPartial(ctx, e, slot, c, st)
	}
}

// statusPlay sends, on the first slow slots, a header that never ends, one
// byte every 200 ms; on the others 1 MiB of headers at full speed.
func statusPlay(slow int) func(context.Context, *soakEnv, int, net.Conn, *attackStats) {
	return func(ctx context.Context, e *soakEnv, slot int, c net.Conn, st *attackStats) {
		if slot < slow {
			playSlowHeader(c, st)
		} else {
			playHugeHeader(c, st)
		}
	}
}

func playSlowHeader(c net.Conn, st *attackStats) {
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: soak\r\nX-Slow: "); err != nil {
		st.outcome("slow: write " + errorClass(err))
		return
	}
	buf := make([]byte, 64)
	for {
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := c.Read(buf)
		if n > 0 {
			st.outcome("slow: answered " + statusLine(buf[:n]))
			_ = c.SetReadDeadline(time.Time{})
			waitClosed(c)
			return
		}
		if !isTimeout(err) {
			st.outcome("slow: closed unanswered")
			return
		}
		if _, err := c.Write([]byte{'a'}); err != nil {
			st.outcome("slow: write " + errorClass(err))
			return
		}
	}
}

// hugeHeaderBytes is the size of the header block the huge-header slots send.
const hugeHeaderBytes = 1 << 20

func playHugeHeader(c net.Conn, st *attackStats) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	w := bufio.NewWriterSize(c, 16<<10)
	fmt.Fprintf(w, "GET /metrics HTTP/1.1\r\nHost: soak\r\n")
	line := "X-Pad-%04d: " + strings.Repeat("p", 1000) + "\r\n"
	for i := 0; i < hugeHeaderBytes/1014; i++ {
		fmt.Fprintf(w, line, i)
	}
	w.WriteString("\r\n")
	if err := w.Flush(); err != nil {
		st.outcome("huge: cut off while sending (" + errorClass(err) + ")")
		return
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if n > 0 {
		st.outcome("huge: answered " + statusLine(buf[:n]))
		return
	}
	st.outcome("huge: no answer (" + errorClass(err) + ")")
}

// statusLine is the status code of an HTTP response's first bytes.
func statusLine(b []byte) string {
	f := strings.Fields(string(b))
	if len(f) >= 2 && strings.HasPrefix(f[0], "HTTP/") {
		return "HTTP " + f[1]
	}
	return "non-HTTP bytes"
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func playBadSNI(_ context.Context, e *soakEnv, slot int, c net.Conn, st *attackStats) {
	kind, hello := "long", e.longSNI
	if slot%2 == 1 {
		kind, hello = "nul", e.nulSNI
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(hello); err != nil {
		st.outcome(kind + ": cut off while sending (" + errorClass(err) + ")")
		return
	}
	var b [1]byte
	_, err := io.ReadFull(c, b[:])
	switch {
	case err != nil:
		st.outcome(kind + ": " + errorClass(err))
	case b[0] == 0x15:
		st.outcome(kind + ": alert")
	case b[0] == recordTypeHandshake:
		st.outcome(kind + ": ServerHello")
	default:
		st.outcome(kind + ": other bytes")
	}
}

// bigCertStallAfter is how many bytes after its ClientHello the big
// certificate client writes before it stops: most of the ~250 KiB message.
const bigCertStallAfter = 230 << 10

func playBigCert(ctx context.Context, e *soakEnv, _ int, c net.Conn, st *attackStats) {
	sc := &stallConn{Conn: c, budget: bigCertStallAfter}
	cfg := &tls.Config{
		InsecureSkipVerify: true, // the attacker does not care who moat is
		ServerName:         "localhost",
		MinVersion:         tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &e.bigCert, nil
		},
	}
	err := tls.Client(sc, cfg).HandshakeContext(ctx)
	switch {
	case ctx.Err() != nil:
	case sc.stalled():
		st.outcome("stalled mid-certificate, then closed by moat")
	case err == nil:
		st.outcome("handshake completed")
	default:
		st.outcome("ended before the stall: " + errorClass(err))
	}
}

// stallConn passes the first Write (the ClientHello) and then budget more
// bytes, and stops there: the Write that crosses the budget sends its share
// and then blocks, reading and discarding, until moat closes the connection
// (or the soak closes it). The server is left holding a partial message.
type stallConn struct {
	net.Conn
	budget int
	hello  bool // the ClientHello has been written
	mu     sync.Mutex
	held   bool
}

var errStalled = errors.New("stalled on purpose")

func (s *stallConn) Write(p []byte) (int, error) {
	if !s.hello {
		s.hello = true
		return s.Conn.Write(p)
	}
	if len(p) <= s.budget {
		s.budget -= len(p)
		return s.Conn.Write(p)
	}
	n, err := s.Conn.Write(p[:s.budget])
	s.budget = 0
	if err != nil {
		return n, err
	}
	s.mu.Lock()
	s.held = true
	s.mu.Unlock()
	_, _ = io.Copy(io.Discard, s.Conn)
	return n, errStalled
}

func (s *stallConn) stalled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// slowReadEvery is how often the slow reader takes one byte: often enough
// that no idle timeout fires, slowly enough that moat's buffers fill.
const slowReadEvery = 5 * time.Second

func playSlowReader(ctx context.Context, e *soakEnv, _ int, c net.Conn, st *attackStats) {
	tc := tls.Client(c, e.legitTLS)
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		if ctx.Err() == nil {
			st.outcome("handshake: " + errorClass(err))
		}
		return
	}
	if _, err := tc.Write(header(modeDownload, 1<<62, 0)); err != nil {
		st.outcome("request: " + errorClass(err))
		return
	}
	st.outcome("established")
	var b [1]byte
	for ctx.Err() == nil {
		sleepCtx(ctx, slowReadEvery)
		_ = tc.SetReadDeadline(time.Now().Add(slowReadEvery))
		if _, err := tc.Read(b[:]); err != nil && !isTimeout(err) {
			if ctx.Err() == nil {
				st.outcome("closed by moat: " + errorClass(err))
			}
			return
		}
	}
}
