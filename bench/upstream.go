package main

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"time"
)

// The upstream speaks a tiny protocol so that one listener serves every
// measurement: the first byte of a connection picks the mode.
//
//	'E'                     echo everything until EOF, then half-close
//	'U' len(8) flags(1)     read len bytes, then reply with an ack
//	'D' len(8) flags(1)     send len bytes of the pattern, then half-close
//
// Upload and download bytes follow a deterministic pattern, so both ends can
// check every byte with a memcmp (cheap enough to leave on at 1 GB/s) and,
// when flagSHA is set, also hash the stream.
const (
	modeEcho     = 'E'
	modeUpload   = 'U'
	modeDownload = 'D'
	flagSHA      = 1
	headerLen    = 10
	ackLen       = 8 + 1 + sha256.Size // count, pattern ok, sha256 or zeros
	chunkSize    = 64 << 10
	patternSize  = 1 << 20
)

// pattern is the byte stream of uploads and downloads, repeated every
// patternSize bytes. Seeded, so every process derives the same bytes.
var pattern = func() []byte {
	b := make([]byte, patternSize)
	r := rand.NewChaCha8([32]byte{'m', 'o', 'a', 't'})
	_, _ = r.Read(b)
	return b
}()

// patternAt fills p with the pattern bytes at stream offset off.
func patternAt(p []byte, off int64) {
	for n := 0; n < len(p); {
		o := int((off + int64(n)) % patternSize)
		n += copy(p[n:], pattern[o:])
	}
}

// matchesPattern reports whether p equals the pattern at stream offset off.
func matchesPattern(p []byte, off int64) bool {
	for n := 0; n < len(p); {
		o := int((off + int64(n)) % patternSize)
		m := min(len(p)-n, patternSize-o)
		if !bytes.Equal(p[n:n+m], pattern[o:o+m]) {
			return false
		}
		n += m
	}
	return true
}

func header(mode byte, n int64, flags byte) []byte {
	h := make([]byte, headerLen)
	h[0] = mode
	binary.BigEndian.PutUint64(h[1:9], uint64(n))
	h[9] = flags
	return h
}

// halfCloser is what both *net.TCPConn and *tls.Conn offer.
type halfCloser interface{ CloseWrite() error }

// serveConn runs one upstream connection. It is the same code behind the
// plaintext upstream and behind the direct TLS server.
func serveConn(c net.Conn) {
	defer c.Close()
	h := make([]byte, headerLen)
	if _, err := io.ReadFull(c, h[:1]); err != nil {
		return
	}
	switch h[0] {
	case modeEcho:
		echo(c)
	case modeUpload, modeDownload:
		if _, err := io.ReadFull(c, h[1:]); err != nil {
			return
		}
		n, flags := int64(binary.BigEndian.Uint64(h[1:9])), h[9]
		if h[0] == modeUpload {
			_ = sink(c, n, flags)
		} else if source(c, n) != nil {
			return
		}
	}
	if hc, ok := c.(halfCloser); ok {
		_ = hc.CloseWrite()
	}
	// Wait for the peer's EOF so that the last bytes are not lost to a reset
	// caused by closing with unread input.
	_, _ = io.Copy(io.Discard, c)
}

// echo writes back what it reads. A plain loop rather than io.Copy, because
// io.Copy on a *net.TCPConn would splice, and the upstream should behave the
// same for every proxy and for the direct server.
func echo(c net.Conn) {
	buf := make([]byte, 16<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// sink reads n bytes, checks them and writes the ack.
func sink(c net.Conn, n int64, flags byte) error {
	buf := make([]byte, chunkSize)
	h := sha256.New()
	var got int64
	ok := true
	for got < n {
		m, err := c.Read(buf[:min(int64(len(buf)), n-got)])
		ok = ok && matchesPattern(buf[:m], got)
		if flags&flagSHA != 0 {
			h.Write(buf[:m])
		}
		got += int64(m)
		if err != nil {
			break
		}
	}
	ack := make([]byte, ackLen)
	binary.BigEndian.PutUint64(ack, uint64(got))
	if ok && got == n {
		ack[8] = 1
	}
	if flags&flagSHA != 0 {
		h.Sum(ack[9:9])
	}
	_, err := c.Write(ack)
	return err
}

// source writes n bytes of the pattern.
func source(c net.Conn, n int64) error {
	buf := make([]byte, chunkSize+patternSize)
	// Two copies of the pattern back to back let every chunk be a plain
	// sub-slice, so the source costs no copying.
	copy(buf, pattern)
	patternAt(buf[patternSize:], patternSize)
	var sent int64
	for sent < n {
		o := int(sent % patternSize)
		m := min(int64(chunkSize), n-sent)
		if _, err := c.Write(buf[o : o+int(m)]); err != nil {
			return err
		}
		sent += m
	}
	return nil
}

// serveListener accepts until the listener fails. Accept errors such as
// EMFILE are retried a bounded number of times so a full fd table cannot
// spin the CPU forever.
func serveListener(ln net.Listener) error {
	failures := 0
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || failures >= 1000 {
				return err
			}
			failures++
			time.Sleep(10 * time.Millisecond)
			continue
		}
		failures = 0
		go serveConn(c)
	}
}

// upstreamMain is `bench upstream -listen ADDR`: the plaintext upstream.
// `bench direct -listen ADDR -cert C -key K` is the same behind crypto/tls.
func upstreamMain(args []string, direct bool) error {
	name := "upstream"
	if direct {
		name = "direct"
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on")
	certFile := fs.String("cert", "", "PEM chain (direct only)")
	keyFile := fs.String("key", "", "PEM key (direct only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	raiseNoFile()
	var ln net.Listener
	var err error
	if direct {
		var cfg *tls.Config
		if cfg, err = serverTLSConfig(*certFile, *keyFile); err != nil {
			return err
		}
		ln, err = tls.Listen("tcp", *listen, cfg)
	} else {
		ln, err = net.Listen("tcp", *listen)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "%s listening on %s\n", name, ln.Addr())
	return serveListener(ln)
}

// serverTLSConfig is the server side shared by the direct server and the
// io.Copy relay: TLS 1.2 and 1.3, no session tickets (so no resumption, and
// no ticket to write after each TLS 1.3 handshake).
func serverTLSConfig(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates:           []tls.Certificate{cert},
		MinVersion:             tls.VersionTLS12,
		SessionTicketsDisabled: true,
	}, nil
}
