package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-proxy/moat/endpoint"
	"github.com/moat-proxy/moat/tlsstate"
)

// A connection goes through these phases in order. In server mode:
// accept → (the PROXY protocol header, from a trusted load balancer) → handshake (authorization happens inside it, through the TLS
// configuration's verifier) → dial the upstream → relay → drain → closed.
// In client mode the dial comes before the handshake, since the TLS side is
// the one dialled (orientation.dialFirst). Drain is the relay after one
// direction has ended (its EOF carried through as a FIN or close_notify):
// the other direction keeps flowing until it ends too.
type phase uint8

const (
	phaseProxyHeader phase = iota
	phaseHandshake
	phaseDial
	phaseRelay
	phaseDrain
	phaseClosed
)

// relaying reports whether the connection moves data (relay or drain).
func (p phase) relaying() bool { return p == phaseRelay || p == phaseDrain }

// conn is one proxied connection. It belongs to one loop.
type conn struct {
	l   *loop
	cfg *Config // the service's settings: the server's, or its SNI route's after the handshake
	tls side    // the socket that speaks TLS
	pln side    // the socket that speaks plaintext
	eng *tlsstate.Engine
	o   orientation

	toPlain pipe // engine plaintext waiting for the plaintext socket
	toTLS   pipe // plaintext waiting for the engine

	phase      phase
	deadline   time.Time
	heapIndex  int
	lastActive time.Time
	closeSent  bool // close_notify queued

	start       time.Time
	client      string
	relayed     tally   // bytes relayed each way, for the log line
	tlsInfo     Summary // TLS fields filled in at handshake end
	handshook   time.Time
	hs          *shake // the handshake's slot in the server's guard, until it ends
	answered    bool   // server mode: the ClientHello was answered
	shakeIn     int    // server mode: ciphertext bytes received during the handshake
	queued      bool   // in the loop's run-again list
	heardTLS    bool   // a byte arrived on the TLS socket
	dialAttempt int    // the dial cursor: index of the target address being connected to
	peerAddr    unix.Sockaddr
	header      []byte         // the PROXY protocol header received so far (phaseProxyHeader)
	viaProxy    bool           // the connection came through a trusted proxy, which sent a header
	proxiedDst  netip.AddrPort // the address the proxied client connected to, from its header
}

// newConn starts the life of an accepted socket, if the limits let it in.
func (l *loop) newConn(fd int, sa unix.Sockaddr) {
	now := time.Now()
	c := &conn{
		l: l, cfg: &l.srv.cfg, o: l.srv.orient, heapIndex: -1, start: now, lastActive: now,
		tls: side{fd: -1}, pln: side{fd: -1}, client: sockaddrString(sa), peerAddr: sa,
		toPlain: pipe{limit: l.srv.budget.batch()}, toTLS: pipe{limit: l.srv.budget.batch()},
	}
	var src netip.Addr
	proxied := l.srv.mustSendHeader(sa)
	if c.o.guarded() && !proxied {
		src = sockaddrAddrPort(sa).Addr() // behind a proxy: the header's, once read
	}
	hs, victims, reason := l.srv.admit(now, c, src)
	if reason != 0 {
		l.refuse(fd, reason)
		return
	}
	l.evictAll(victims)
	c.hs = hs
	accepted := c.o.accepted(c)
	accepted.fd, accepted.readable, accepted.writable = fd, true, true
	if c.o.keepAliveAccepted() && isInet(sa) {
		setKeepAlive(fd, l.srv.cfg.KeepAlive)
	}
	if err := l.add(fd, c); err != nil {
		unix.Close(fd)
		l.srv.active.Add(-1)
		c.doneShaking()
		return
	}
	l.srv.cfg.Observer.Accepted()
	cfg := l.srv.cfg
	c.eng = c.o.engine(cfg.TLS, tlsstate.Options{HighWater: cfg.HighWater})
	if !c.o.dialFirst() {
		c.phase = phaseHandshake
		if proxied {
			c.phase, c.viaProxy = phaseProxyHeader, true
		}
		l.timer.schedule(c, now.Add(cfg.ClientHelloTimeout))
	} else {
		c.phase = phaseDial
		l.timer.schedule(c, now.Add(c.dialTimeout()))
		c.startDial()
	}
	c.run()
}

// onEvent records readiness and runs the connection forward.
func (c *conn) onEvent(fd int, ev uint32) {
	s := &c.tls
	if fd == c.pln.fd {
		s = &c.pln
	}
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		s.readable = true
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		s.hup = true
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		s.writable = true
	}
	c.run()
}

// runBudget bounds the turns one connection gets per wakeup, so that a
// connection with a firehose on both sides cannot starve the others on its
// loop. A connection that still had work is queued to run again before the
// loop waits (sockets are edge-triggered: no new event would come for it).
const runBudget = 4

// run advances the connection through its phases until nothing moves or
// its budget is spent.
func (c *conn) run() {
	defer c.recoverPanic()
	for turn := 0; c.phase != phaseClosed; turn++ {
		if turn == runBudget {
			c.l.again(c)
			return
		}
		var moved bool
		switch c.phase {
		case phaseProxyHeader:
			moved = c.readProxyHeader()
		case phaseHandshake:
			moved = c.handshake()
		case phaseDial:
			moved = c.dialProgress()
		case phaseRelay, phaseDrain:
			moved = c.relay()
		}
		if !moved {
			return
		}
	}
}

// handshake feeds the engine until the TLS handshake completes.
func (c *conn) handshake() bool {
	moved := c.flushTLS()
	moved = c.readTLS() || moved
	if c.phase == phaseClosed {
		return false
	}
	if c.tls.readEOF && !c.heardTLS && c.o.guarded() {
		c.end(ReasonHandshake, errClosedSilently)
		return false
	}
	err := c.eng.Handshake()
	c.noteAnswer()
	moved = c.flushTLS() || moved
	switch {
	case c.phase == phaseClosed:
		return false
	case err == nil:
		c.handshakeDone()
		return true
	case errors.Is(err, tlsstate.ErrWantRead):
		if c.tls.readEOF {
			c.end(ReasonHandshake, fmt.Errorf("%w during the handshake", ErrPeerClosed))
		}
		return moved
	default:
		c.end(ReasonHandshake, c.cfg.explainHandshake(err))
		return false
	}
}

// handshakeDone records what was negotiated and moves on: to dialling the
// upstream in server mode, to relaying in client mode.
func (c *conn) handshakeDone() {
	now := time.Now()
	cs := c.eng.ConnectionState()
	c.handshook = now
	c.doneShaking()
	c.tlsInfo.TLSVersion = tls.VersionName(cs.Version)
	c.tlsInfo.Cipher = tls.CipherSuiteName(cs.CipherSuite)
	c.tlsInfo.SNI = cs.ServerName
	c.tlsInfo.ALPN = cs.NegotiatedProtocol
	c.tlsInfo.Resumed = cs.DidResume
	c.tlsInfo.Group = cs.CurveID
	if len(cs.PeerCertificates) > 0 {
		c.tlsInfo.Peer = cs.PeerCertificates[0].Subject.CommonName
		c.tlsInfo.PeerSPIFFEID = spiffeID(cs.PeerCertificates[0])
	}
	if !c.route(&cs) {
		c.end(ReasonHandshake, fmt.Errorf("%w %q", ErrNoRoute, cs.ServerName))
		return
	}
	c.cfg.Observer.Handshake(&cs, now.Sub(c.start), nil)
	if !c.o.dialFirst() {
		c.phase = phaseDial
		c.l.timer.schedule(c, now.Add(c.dialTimeout()))
		c.startDial()
		return
	}
	c.startRelay(now)
}

// startDial opens the socket to the far side: the plaintext upstream in
// server mode, the TLS server in client mode.
func (c *conn) startDial() {
	fd, inProgress, err := c.cfg.Target.DialAddress(c.dialAttempt)
	if err != nil {
		c.dialFailed(err)
		return
	}
	dialled := c.o.dialled(c)
	dialled.fd, dialled.writable = fd, !inProgress
	if !c.o.keepAliveAccepted() && c.cfg.Target.Address().Network() == "tcp" {
		setKeepAlive(fd, c.cfg.KeepAlive)
	}
	if err := c.l.add(fd, c); err != nil {
		unix.Close(fd)
		dialled.fd = -1
		c.dialFailed(err)
		return
	}
	if !inProgress {
		c.dialDone()
	}
}

// dialProgress finishes a connect once the socket is writable.
func (c *conn) dialProgress() bool {
	d := c.o.dialled(c)
	if d.fd < 0 || !d.writable {
		if !c.o.dialFirst() {
			return c.readTLS() // keep early data flowing into the engine (bounded)
		}
		return false
	}
	if err := endpoint.FinishDial(d.fd); err != nil {
		c.dialFailed(fmt.Errorf("dial %s: %w", c.cfg.Target, err))
		return false
	}
	c.dialDone()
	return true
}

// dialFailed tries the target's next address, if it has one left, within
// the same connect deadline; otherwise it resets the accepted socket, so its
// peer sees an error rather than an empty but orderly stream.
func (c *conn) dialFailed(err error) {
	if c.dialAttempt+1 < c.cfg.Target.Addresses() {
		c.dialAttempt++
		if d := c.o.dialled(c); d.fd >= 0 {
			c.l.remove(d.fd)
			c.l.closeLater(d.fd)
			d.fd, d.writable = -1, false
		}
		c.startDial()
		return
	}
	c.dialGiveUp(err)
}

// dialGiveUp resets the accepted socket, so its peer sees an error rather
// than an empty but orderly stream.
func (c *conn) dialGiveUp(err error) {
	c.cfg.Observer.DialFailed(err)
	c.end(ReasonDial, err)
}

// dialTimeout bounds the connect: --connect-timeout, and in client mode
// never past the handshake timeout, which runs from accept.
func (c *conn) dialTimeout() time.Duration {
	d := c.cfg.ConnectTimeout
	if c.o.dialFirst() {
		d = min(d, c.cfg.HandshakeTimeout)
	}
	return d
}

func (c *conn) dialDone() {
	now := time.Now()
	if !c.o.dialFirst() {
		c.sendUpstreamHeader()
		c.startRelay(now)
		return
	}
	c.phase = phaseHandshake
	c.l.timer.schedule(c, c.start.Add(c.cfg.HandshakeTimeout))
}

func (c *conn) startRelay(now time.Time) {
	c.phase = phaseRelay
	c.lastActive = now
	c.l.timer.schedule(c, c.relayDeadline())
}

// relayDeadline is when a relaying connection is next checked: the
// earlier of its idle limit and the end of its lifetime (zero: never).
// Activity does not move the deadline (that would cost a heap fix per
// read); the check finds lastActive moved and schedules the next one.
func (c *conn) relayDeadline() time.Time {
	var at time.Time
	if idle := c.cfg.IdleTimeout; idle > 0 {
		at = c.lastActive.Add(idle)
	}
	if life := c.cfg.MaxConnLifetime; life > 0 {
		if end := c.start.Add(life); at.IsZero() || end.Before(at) {
			at = end
		}
	}
	return at
}

// relayLimits ends a relaying connection past its lifetime or idle
// limit, or schedules the next check.
func (c *conn) relayLimits(now time.Time) {
	cfg := c.cfg
	if life := cfg.MaxConnLifetime; life > 0 && !now.Before(c.start.Add(life)) {
		c.end(ReasonMaxLifetime, fmt.Errorf("%w of %s", ErrMaxLifetime, life))
		return
	}
	if idle := cfg.IdleTimeout; idle > 0 && !now.Before(c.lastActive.Add(idle)) {
		c.end(ReasonIdleTimeout, fmt.Errorf("idle for %s", idle))
		return
	}
	c.l.timer.schedule(c, c.relayDeadline())
}

// onDeadline enforces the handshake, connect, idle and lifetime limits.
func (c *conn) onDeadline(now time.Time) {
	defer c.recoverPanic()
	switch c.phase {
	case phaseProxyHeader:
		c.tls.readable = true // one turn first, as for a ClientHello below
		c.run()
		switch c.phase {
		case phaseProxyHeader:
			c.refuseHeader(HeaderTimeout, fmt.Errorf("not complete within %s", c.l.srv.cfg.ClientHelloTimeout))
		case phaseHandshake:
			c.l.timer.schedule(c, now) // the header came last minute: the ClientHello's deadline has passed too
		}
	case phaseHandshake:
		if c.o.guarded() && !c.answered {
			// A loop behind on its events may not have read a
			// ClientHello that did arrive: give it one turn first, so
			// that a busy moat does not blame its clients.
			c.tls.readable = true
			c.run()
			if c.answered || c.phase != phaseHandshake {
				return
			}
			c.end(ReasonClientHelloTimeout, fmt.Errorf("%w: no ClientHello within %s", ErrClientHelloTimeout, c.cfg.ClientHelloTimeout))
			return
		}
		c.end(ReasonHandshakeTimeout, fmt.Errorf("%w within %s", ErrHandshakeTimeout, c.cfg.HandshakeTimeout))
	case phaseDial:
		c.dialGiveUp(fmt.Errorf("dial %s: no connection within %s", c.cfg.Target, c.dialTimeout()))
	case phaseRelay, phaseDrain:
		c.relayLimits(now)
	}
}

// doneShaking gives the connection's handshake slot back.
func (c *conn) doneShaking() {
	if c.hs != nil {
		c.l.srv.guard.leave(c.hs)
		c.hs = nil
	}
}

// sendUpstreamHeader writes the configured header (the PROXY protocol) to
// the upstream before any plaintext.
func (c *conn) sendUpstreamHeader() {
	build := c.cfg.UpstreamHeader
	if build == nil {
		return
	}
	cs := c.eng.ConnectionState()
	local := c.proxiedDst
	if sa, err := unix.Getsockname(c.tls.fd); err == nil && !local.IsValid() {
		local = sockaddrAddrPort(sa)
	}
	if hdr := build(sockaddrAddrPort(c.peerAddr), local, &cs); len(hdr) > 0 {
		c.relayed.headerLeft = len(hdr)
		c.writePlain(hdr)
	}
}
