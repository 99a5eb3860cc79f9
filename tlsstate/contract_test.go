package tlsstate

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// memConn is a net.Conn over memory for raw tls.Conns. Until manual is set,
// writes go straight to the peer and an empty Read blocks, so two tls.Conns
// can handshake on two goroutines. With manual set, writes are captured in
// out, an empty Read returns a Temporary error, and readErr/writeErr inject
// transport failures: the shapes the engine's BIO relies on.
type memConn struct {
	mu       sync.Mutex
	cond     *sync.Cond
	in, out  bytes.Buffer
	peer     *memConn
	manual   bool
	readErr  error
	writeErr error
	reads    int // Read calls that returned bytes
}

func memPipe() (*memConn, *memConn) {
	a, b := &memConn{}, &memConn{}
	a.cond, b.cond = sync.NewCond(&a.mu), sync.NewCond(&b.mu)
	a.peer, b.peer = b, a
	return a, b
}

func (c *memConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.in.Len() == 0 {
		switch {
		case c.readErr != nil:
			return 0, c.readErr
		case c.manual:
			return 0, errWouldBlock
		}
		c.cond.Wait()
	}
	c.reads++
	return c.in.Read(p)
}

func (c *memConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	manual, werr := c.manual, c.writeErr
	if manual {
		if werr == nil {
			c.out.Write(p)
		}
		c.mu.Unlock()
		if werr != nil {
			return 0, werr
		}
		return len(p), nil
	}
	c.mu.Unlock()
	c.peer.feed(p)
	return len(p), nil
}

func (c *memConn) feed(p []byte) {
	c.mu.Lock()
	c.in.Write(p)
	c.cond.Broadcast()
	c.mu.Unlock()
}

func (c *memConn) set(f func(c *memConn)) {
	c.mu.Lock()
	f(c)
	c.mu.Unlock()
}

func (c *memConn) takeOut() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.out.Next(c.out.Len()))
}

func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return bioAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return bioAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// rawPair handshakes two tls.Conns over memPipe and switches both to manual.
func rawPair(t *testing.T, version uint16) (cli, srv *tls.Conn, cc, sc *memConn) {
	t.Helper()
	p := testPKI(t)
	srvCfg, cliCfg := p.configs(version, p.small, false)
	cc, sc = memPipe()
	cli, srv = tls.Client(cc, cliCfg), tls.Server(sc, srvCfg)
	errc := make(chan error, 1)
	go func() { errc <- srv.Handshake() }()
	if err := cli.Handshake(); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	cc.set(func(c *memConn) { c.manual = true })
	sc.set(func(c *memConn) { c.manual = true })
	return cli, srv, cc, sc
}

// TestCryptoTLSTransportErrorContract is a canary for DESIGN section 1: the
// engine's shape (a worker for handshakes, a would-block BIO afterwards, a
// write queue that never fails) rests on these crypto/tls behaviours. If a
// Go upgrade changes one, this test fails before the engine misbehaves.
func TestCryptoTLSTransportErrorContract(t *testing.T) {
	t.Run("HandshakeWouldBlockIsSticky", testHandshakeWouldBlockIsSticky)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v)+"/ReadTemporaryErrorIsRetryable", func(t *testing.T) {
			testReadTemporaryErrorIsRetryable(t, v)
		})
		t.Run(tls.VersionName(v)+"/ReadPermanentErrorIsSticky", func(t *testing.T) {
			testReadPermanentErrorIsSticky(t, v)
		})
		t.Run(tls.VersionName(v)+"/WriteErrorIsSticky", func(t *testing.T) {
			testWriteErrorIsSticky(t, v)
		})
	}
}

func testHandshakeWouldBlockIsSticky(t *testing.T) {
	p := testPKI(t)
	srvCfg, cliCfg := p.configs(tls.VersionTLS13, p.small, false)
	hello := clientHello(t, cliCfg)
	_, sc := memPipe()
	sc.manual = true
	srv := tls.Server(sc, srvCfg)
	sc.feed(hello[:10])
	first := srv.Handshake()
	var ne net.Error
	//lint:ignore SA1019 crypto/tls decides stickiness by Temporary, which is the contract pinned here
	if !errors.As(first, &ne) || !ne.Temporary() {
		t.Fatalf("handshake over a would-block transport = %v, want the transport's temporary error", first)
	}
	sc.feed(hello[10:])
	reads := sc.reads
	if err := srv.Handshake(); err != first {
		t.Fatalf("second Handshake = %v, want the same sticky error %v", err, first)
	}
	if sc.reads != reads {
		t.Fatalf("second Handshake read the transport (%d reads): the would-block is no longer sticky", sc.reads-reads)
	}
	if _, err := srv.Read(make([]byte, 1)); err != first {
		t.Fatalf("Read after failed handshake = %v, want the sticky %v", err, first)
	}
}

func testReadTemporaryErrorIsRetryable(t *testing.T, version uint16) {
	cli, srv, cc, sc := rawPair(t, version)
	msg := []byte("retry me")
	if _, err := cli.Write(msg); err != nil {
		t.Fatal(err)
	}
	record := cc.takeOut()
	buf := make([]byte, 64)
	wouldBlocks := 0
	for i := range record {
		sc.feed(record[i : i+1])
		n, err := srv.Read(buf)
		if i < len(record)-1 {
			if n != 0 || !isWouldBlock(err) {
				t.Fatalf("byte %d of %d: Read = %d, %v; want the temporary error", i+1, len(record), n, err)
			}
			wouldBlocks++
			continue
		}
		if err != nil || !bytes.Equal(buf[:n], msg) {
			t.Fatalf("after %d temporary errors: Read = %q, %v; want %q", wouldBlocks, buf[:n], err, msg)
		}
	}
}

func testReadPermanentErrorIsSticky(t *testing.T, version uint16) {
	cli, srv, cc, sc := rawPair(t, version)
	boom := errors.New("transport broke")
	sc.set(func(c *memConn) { c.readErr = boom })
	if _, err := srv.Read(make([]byte, 1)); err != boom {
		t.Fatalf("Read = %v, want %v", err, boom)
	}
	if _, err := cli.Write([]byte("late")); err != nil {
		t.Fatal(err)
	}
	sc.set(func(c *memConn) { c.readErr = nil })
	sc.feed(cc.takeOut())
	if _, err := srv.Read(make([]byte, 8)); err != boom {
		t.Fatalf("Read after a non-temporary error = %v, want the same sticky error", err)
	}
}

func testWriteErrorIsSticky(t *testing.T, version uint16) {
	_, srv, _, sc := rawPair(t, version)
	sc.set(func(c *memConn) { c.writeErr = errWouldBlock })
	if _, err := srv.Write([]byte("x")); err == nil {
		t.Fatal("Write over a failing transport succeeded")
	}
	sc.set(func(c *memConn) { c.writeErr = nil })
	_, err := srv.Write([]byte("y"))
	var ne net.Error
	//lint:ignore SA1019 crypto/tls decides stickiness by Temporary, which is the contract pinned here
	if err == nil || !errors.As(err, &ne) || ne.Temporary() {
		t.Fatalf("Write after a temporary write error = %v; want a sticky, non-temporary error", err)
	}
	if got := sc.takeOut(); len(got) != 0 {
		t.Fatalf("Write after a sticky error still wrote %d bytes", len(got))
	}
}

// clientHello returns the first flight of a client with cfg.
func clientHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	c := Client(cfg, Options{})
	defer c.Close()
	if err := c.Handshake(); err != ErrWantRead {
		t.Fatalf("client Handshake = %v, want ErrWantRead", err)
	}
	return bytes.Clone(c.Output())
}

// TestCryptoTLSErrorTextContract pins every crypto/tls text tlserrors.go
// reads: each case makes this Go release's crypto/tls fail a real handshake
// and checks that the predicate and ClassifyHandshakeFailure still see it. A
// Go upgrade that rewords one fails here, in one place. The two
// renegotiation texts need a peer that renegotiates, which crypto/tls never
// starts: TestClientRenegotiatesWithOpenSSLServer (IsRenegotiationRefused) and
// TestServerRejectsClientInitiatedRenegotiation (IsClientRenegotiation) pin
// them against openssl.
func TestCryptoTLSErrorTextContract(t *testing.T) {
	p := testPKI(t)
	srv13, cli13 := p.configs(tls.VersionTLS13, p.small, false)
	srv12, cli12 := p.configs(tls.VersionTLS12, p.small, false)
	requireCert := srv13.Clone()
	requireCert.ClientAuth = tls.RequireAnyClientCert
	oldClient := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	ecdsaOnly := srv12.Clone()
	ecdsaOnly.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256} // our key is ECDSA
	distrust := cli13.Clone()
	distrust.RootCAs = p.clientCA.Pool()
	x25519Only, p256Only := srv13.Clone(), cli13.Clone()
	x25519Only.CurvePreferences = []tls.CurveID{tls.X25519}
	p256Only.CurvePreferences = []tls.CurveID{tls.CurveP256}

	cases := []struct {
		name     string
		server   *tls.Config
		client   *tls.Config // nil: the client writes raw instead
		raw      []byte
		side     string // whose error is checked
		is       func(error) bool
		wantKind HandshakeFailure
	}{
		{"no client certificate", requireCert, cli13, nil, "server", IsNoClientCert, FailureNoClientCert},
		{"certificate required alert", requireCert, cli13, nil, "client", nil, FailureCertificateRequired},
		{"no certificates configured", &tls.Config{}, cli13, nil, "server", IsNoCertificatesConfigured, FailureNoCertificates},
		{"plaintext", srv13, nil, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), "server", nil, FailureNotTLS},
		{"oversized record", srv13, nil, []byte{22, 3, 1, 0xff, 0xff}, "server", nil, FailureBadRecord},
		{"client offers only old versions", srv13, oldClient, nil, "server", nil, FailureProtocolVersion},
		{"protocol version alert", srv13, oldClient, nil, "client", nil, FailureProtocolVersion},
		{"no shared cipher suite", ecdsaOnly, cli12, nil, "server", nil, FailureNoSharedCipher},
		{"no shared key exchange", x25519Only, p256Only, nil, "server", nil, FailureNoSharedCipher},
		{"SSLv2 ClientHello", srv13, nil, []byte{0x80, 0x2e, 0x01, 0x00, 0x02}, "server", nil, FailureProtocolVersion},
		{"peer rejected our certificate", srv13, distrust, nil, "server", nil, FailurePeerRejectedCert},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srvErr, cliErr := failedHandshake(t, c.server, c.client, c.raw)
			err := map[string]error{"server": srvErr, "client": cliErr}[c.side]
			if err == nil {
				t.Fatalf("%s handshake succeeded (server %v, client %v)", c.side, srvErr, cliErr)
			}
			if c.is != nil && !c.is(err) {
				t.Errorf("%s error %q: the predicate no longer recognises it", c.side, err)
			}
			if got := ClassifyHandshakeFailure(err); got != c.wantKind {
				t.Errorf("%s error %q classified %v, want %v", c.side, err, got, c.wantKind)
			}
		})
	}
	t.Run("bad record MAC", func(t *testing.T) {
		cli, srv, cc, sc := rawPair(t, tls.VersionTLS13)
		if _, err := cli.Write([]byte("tampered")); err != nil {
			t.Fatal(err)
		}
		record := cc.takeOut()
		record[len(record)-1] ^= 1
		sc.feed(record)
		_, err := srv.Read(make([]byte, 64))
		if got := ClassifyHandshakeFailure(err); got != FailureBadRecord {
			t.Errorf("Read of a tampered record = %q, classified %v, want %v", err, got, FailureBadRecord)
		}
	})
}

// failedHandshake runs a server with srvCfg against a client with cliCfg, or
// against raw bytes when cliCfg is nil, over loopback TCP, and returns each
// side's error. A TLS 1.3 client finishes before the server has judged its
// certificate, so the client also reads once to collect a refusal.
func failedHandshake(t *testing.T, srvCfg, cliCfg *tls.Config, raw []byte) (srvErr, cliErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cliDone := make(chan error, 1)
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			cliDone <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if cliCfg == nil {
			c.Write(raw)
			c.(*net.TCPConn).CloseWrite()
			c.Read(make([]byte, 1)) // until the server is done
			cliDone <- nil
			return
		}
		tc := tls.Client(c, cliCfg)
		if err = tc.Handshake(); err == nil {
			_, err = tc.Read(make([]byte, 1))
		}
		cliDone <- err
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	srvErr = tls.Server(c, srvCfg).Handshake()
	c.Close()
	return srvErr, <-cliDone
}
