package main

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// loadResult is what one `bench load` process prints as its last stdout line.
type loadResult struct {
	Test       string  `json:"test"`
	MBps       float64 `json:"mbps,omitempty"`
	Bytes      int64   `json:"bytes,omitempty"`
	Intact     bool    `json:"intact"`            // every byte matched the pattern, counts right
	SHAChecked bool    `json:"sha_checked"`       // -verify was on and every sha256 matched
	SHA        string  `json:"sha,omitempty"`     // sha256 of the first connection's stream
	PerSec     float64 `json:"per_sec,omitempty"` // handshakes per second
	Count      int     `json:"count,omitempty"`   // handshakes, round trips or idle conns
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	P50us      float64 `json:"p50_us,omitempty"`
	P99us      float64 `json:"p99_us,omitempty"`
}

// loadOpts are the flags of `bench load`.
type loadOpts struct {
	addr     string
	test     string // up, down, handshake, pingpong, idle
	tlsVer   string // 1.3 or 1.2
	bytes    int64
	conns    int
	duration time.Duration
	verify   bool
	plain    bool // bulk over plain TCP: the tcp-loopback target, no TLS at all
}

func loadMain(args []string) error {
	var o loadOpts
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.StringVar(&o.addr, "addr", "", "TLS address of the proxy under test")
	fs.StringVar(&o.test, "test", "", "up, down, handshake, pingpong or idle")
	fs.StringVar(&o.tlsVer, "tls", "1.3", "TLS version: 1.3 or 1.2")
	fs.Int64Var(&o.bytes, "bytes", 64<<20, "bulk bytes in total, split over -conns")
	fs.IntVar(&o.conns, "conns", 1, "connections (idle: how many to hold open)")
	fs.DurationVar(&o.duration, "duration", time.Second, "handshake and ping-pong duration")
	fs.BoolVar(&o.verify, "verify", false, "also compare sha256 of bulk streams")
	fs.BoolVar(&o.plain, "plain", false, "up and down over plain TCP (the tcp-loopback target)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	raiseNoFile()
	cfg := clientTLS(o.tlsVer)
	var r loadResult
	var err error
	switch o.test {
	case "up", "down":
		r, err = bulk(o, cfg)
	case "handshake":
		r = handshakes(o.addr, cfg, o.duration, o.conns)
	case "pingpong":
		r, err = pingpong(o.addr, cfg, o.duration, o.conns)
	case "idle":
		r, err = idleConns(o.addr, cfg, o.conns, os.Stdin, os.Stdout)
	default:
		return fmt.Errorf("unknown -test %q", o.test)
	}
	if err != nil {
		return err
	}
	r.Test = o.test
	return json.NewEncoder(os.Stdout).Encode(r)
}

// clientTLS is the client every measurement uses: one version, X25519 key
// exchange (what OpenSSL 3.0 peers and crypto/tls agree on anyway; no
// post-quantum hybrid that only the Go servers would accept). P-256 is listed
// second only because TLS 1.2 servers read supported_groups as the curves
// the client accepts for the ECDSA certificate too, and refuse without it. No session
// cache (every handshake is full), and no chain verification, so the load
// client spends its CPU on the handshake itself; the server's CertificateVerify
// or ServerKeyExchange signature is still checked by crypto/tls.
func clientTLS(version string) *tls.Config {
	v := uint16(tls.VersionTLS13)
	if version == "1.2" {
		v = tls.VersionTLS12
	}
	return &tls.Config{
		InsecureSkipVerify: true,
		ServerName:         benchServerName,
		MinVersion:         v,
		MaxVersion:         v,
		CurvePreferences:   []tls.CurveID{tls.X25519, tls.CurveP256},
	}
}

// dialTLS connects and completes a handshake within 10 s.
func dialTLS(addr string, cfg *tls.Config) (*tls.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := tls.Client(raw, cfg)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// echoByte sends the echo header plus one byte and waits for it to return,
// which proves the proxy finished its handshake and reached the upstream.
func echoByte(c *tls.Conn) error {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte{modeEcho, 'x'}); err != nil {
		return err
	}
	var b [1]byte
	_, err := io.ReadFull(c, b[:])
	return err
}

// bulk moves o.bytes split over o.conns connections, up or down. The clock
// runs from the first byte to the last acknowledgement (up) or last byte
// received (down); handshakes happen before it starts.
func bulk(o loadOpts, cfg *tls.Config) (loadResult, error) {
	conns := make([]net.Conn, o.conns)
	for i := range conns {
		var c net.Conn
		var err error
		if o.plain {
			c, err = net.DialTimeout("tcp", o.addr, 10*time.Second)
		} else {
			c, err = dialTLS(o.addr, cfg)
		}
		if err != nil {
			return loadResult{}, err
		}
		defer c.Close()
		conns[i] = c
	}
	per := o.bytes / int64(o.conns)
	shas := make([]string, o.conns)
	errs := make([]error, o.conns)
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
			if o.test == "up" {
				shas[i], errs[i] = upload(c, per, o.verify)
			} else {
				shas[i], errs[i] = download(c, per, o.verify)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	r := loadResult{Bytes: per * int64(o.conns), Intact: true, SHAChecked: o.verify, SHA: shas[0]}
	r.MBps = float64(r.Bytes) / 1e6 / elapsed.Seconds()
	for _, err := range errs {
		if err != nil {
			r.Intact, r.SHAChecked = false, false
			r.Errors++
			r.FirstError = err.Error()
		}
	}
	return r, nil
}

// upload sends n pattern bytes and checks the upstream's ack.
func upload(c net.Conn, n int64, verify bool) (string, error) {
	var flags byte
	if verify {
		flags = flagSHA
	}
	if _, err := c.Write(header(modeUpload, n, flags)); err != nil {
		return "", err
	}
	buf := make([]byte, chunkSize+patternSize)
	patternAt(buf, 0)
	h := sha256.New()
	for sent := int64(0); sent < n; {
		o := int(sent % patternSize)
		m := int(min(int64(chunkSize), n-sent))
		if _, err := c.Write(buf[o : o+m]); err != nil {
			return "", err
		}
		if verify {
			h.Write(buf[o : o+m])
		}
		sent += int64(m)
	}
	ack := make([]byte, ackLen)
	if _, err := io.ReadFull(c, ack); err != nil {
		return "", fmt.Errorf("reading ack: %w", err)
	}
	got := int64(binary.BigEndian.Uint64(ack))
	if got != n || ack[8] != 1 {
		return "", fmt.Errorf("upstream received %d of %d bytes, pattern ok=%v", got, n, ack[8] == 1)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if verify && sum != hex.EncodeToString(ack[9:]) {
		return "", errors.New("sha256 at the upstream differs from what was sent")
	}
	return sum, nil
}

// download asks for n bytes and checks each against the pattern, and, with
// verify, the stream's sha256 against the pattern's.
func download(c net.Conn, n int64, verify bool) (string, error) {
	var flags byte
	if verify {
		flags = flagSHA
	}
	if _, err := c.Write(header(modeDownload, n, flags)); err != nil {
		return "", err
	}
	buf := make([]byte, chunkSize)
	h := sha256.New()
	var got int64
	for got < n {
		m, err := c.Read(buf[:min(int64(len(buf)), n-got)])
		if !matchesPattern(buf[:m], got) {
			return "", fmt.Errorf("byte mismatch in [%d, %d)", got, got+int64(m))
		}
		if verify {
			h.Write(buf[:m])
		}
		got += int64(m)
		if err != nil && got < n {
			return "", fmt.Errorf("after %d of %d bytes: %w", got, n, err)
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if verify && sum != patternSHA(n) {
		return "", errors.New("sha256 of the received stream differs from the pattern's")
	}
	return sum, nil
}

// patternSHA is the sha256 of the first n pattern bytes.
func patternSHA(n int64) string {
	h := sha256.New()
	buf := make([]byte, chunkSize)
	for off := int64(0); off < n; {
		m := min(int64(len(buf)), n-off)
		patternAt(buf[:m], off)
		h.Write(buf[:m])
		off += m
	}
	return hex.EncodeToString(h.Sum(nil))
}

// handshakes runs workers loops of connect, full handshake, 1-byte echo,
// close, for dur. The echo makes every counted handshake one the server side
// finished (in TLS 1.3 the client is done before the server has read its
// Finished) and includes the proxy's upstream dial, as a real client would.
func handshakes(addr string, cfg *tls.Config, dur time.Duration, workers int) loadResult {
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(dur)
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				c, err := dialTLS(addr, cfg)
				if err == nil {
					err = echoByte(c)
					c.Close()
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					time.Sleep(time.Millisecond) // a broken peer must not spin
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	r := loadResult{Count: int(ok.Load()), Errors: int(failed.Load()), Intact: true}
	r.PerSec = float64(r.Count) / time.Since(start).Seconds()
	if s, isStr := firstErr.Load().(string); isStr {
		r.FirstError = s
	}
	return r
}

// pingpong runs conns connections, each sending 1 KiB and waiting for the
// echo, back to back, for dur. Latencies of all connections are pooled.
func pingpong(addr string, cfg *tls.Config, dur time.Duration, conns int) (loadResult, error) {
	const msg = 1024
	const warmup = 20
	lat := make([][]time.Duration, conns)
	errs := make([]error, conns)
	var wg sync.WaitGroup
	for i := range conns {
		c, err := dialTLS(addr, cfg)
		if err != nil {
			return loadResult{}, err
		}
		defer c.Close()
		if _, err := c.Write([]byte{modeEcho}); err != nil {
			return loadResult{}, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat[i], errs[i] = pingpongConn(c, msg, warmup, dur)
		}()
	}
	wg.Wait()
	all := slices.Concat(lat...)
	r := loadResult{Intact: true, Count: len(all)}
	for _, err := range errs {
		if err != nil {
			r.Errors++
			r.FirstError = err.Error()
			r.Intact = false
		}
	}
	if len(all) == 0 {
		return r, errors.New("no round trips completed: " + r.FirstError)
	}
	slices.Sort(all)
	r.P50us = float64(all[len(all)/2].Nanoseconds()) / 1e3
	r.P99us = float64(all[len(all)*99/100].Nanoseconds()) / 1e3
	return r, nil
}

// pingpongConn is one connection's loop: at most 1e6 round trips, at most dur.
func pingpongConn(c *tls.Conn, msg, warmup int, dur time.Duration) ([]time.Duration, error) {
	out, in := make([]byte, msg), make([]byte, msg)
	patternAt(out, 0)
	_ = c.SetDeadline(time.Now().Add(dur + 10*time.Second))
	lat := make([]time.Duration, 0, 1<<16)
	var deadline time.Time
	for i := 0; i < warmup+1_000_000; i++ {
		if i == warmup { // the clock starts after the warm-up round trips
			deadline = time.Now().Add(dur)
		} else if i > warmup && time.Now().After(deadline) {
			break
		}
		t0 := time.Now()
		if _, err := c.Write(out); err != nil {
			return lat, err
		}
		if _, err := io.ReadFull(c, in); err != nil {
			return lat, err
		}
		if i >= warmup {
			lat = append(lat, time.Since(t0))
		}
	}
	if !matchesPattern(in, 0) {
		return lat, errors.New("echo returned different bytes")
	}
	return lat, nil
}

// idleConns is the idle-memory load. Talking to the harness over stdin and
// stdout lines: it makes one warm-up connection and prints "warm"; on a line
// from stdin it opens n connections (handshake + 1-byte echo each, 32 at a
// time) and prints the result; then it holds them until stdin closes (at
// most 10 minutes) and closes them.
func idleConns(addr string, cfg *tls.Config, n int, stdin io.Reader, stdout io.Writer) (loadResult, error) {
	in := bufio.NewReader(stdin)
	c, err := dialTLS(addr, cfg)
	if err == nil {
		err = echoByte(c)
		c.Close()
	}
	if err != nil {
		return loadResult{}, fmt.Errorf("warm-up connection: %w", err)
	}
	fmt.Fprintln(stdout, "warm")
	if _, err := in.ReadString('\n'); err != nil {
		return loadResult{}, err
	}
	held, r := openIdle(addr, cfg, n)
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	if err := json.NewEncoder(stdout).Encode(r); err != nil {
		return r, err
	}
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, in); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Minute):
	}
	return r, nil
}

// openIdle opens n connections with 32 workers and returns those that worked.
func openIdle(addr string, cfg *tls.Config, n int) ([]*tls.Conn, loadResult) {
	var mu sync.Mutex
	held := make([]*tls.Conn, 0, n)
	r := loadResult{Test: "idle", Intact: true}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				c, err := dialTLS(addr, cfg)
				if err == nil {
					if err = echoByte(c); err != nil {
						c.Close()
					}
				}
				mu.Lock()
				if err != nil {
					r.Errors++
					r.FirstError = err.Error()
				} else {
					held = append(held, c)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	r.Count = len(held)
	return held, r
}
