package proxy

import (
	"errors"
	"fmt"
	"io"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/moat-proxy/moat/proxyproto"
)

// Behind a TCP load balancer (AWS NLB and the like) every connection comes
// from the balancer's address. When the balancer sends a PROXY protocol
// header first, and its addresses are in Config.AcceptProxyHeader, moat
// reads the header before any TLS byte and takes the client address it
// carries as the connection's: in the log line, the per-source handshake
// limit, and the header moat itself sends upstream. A connection from those
// addresses that does not begin with a valid header, and one from anywhere
// else that does, is closed before the handshake and the upstream dial.

// HeaderRefusal is why a connection was closed at its PROXY protocol
// header; String gives the stable metric label.
type HeaderRefusal uint8

// The refusals.
const (
	HeaderUntrusted HeaderRefusal = iota + 1 // a header from a source not trusted to send one
	HeaderMissing                            // a trusted source sent something else first (TLS, anything)
	HeaderInvalid                            // a header that breaks the specification
	HeaderTooLong                            // over the bound (see proxyproto.MaxV1Len, MaxV2Length)
	HeaderTimeout                            // not complete within ClientHelloTimeout
	HeaderTruncated                          // the peer closed before the header was complete
)

var headerRefusalLabels = [...]string{
	HeaderUntrusted: "untrusted", HeaderMissing: "missing", HeaderInvalid: "invalid",
	HeaderTooLong: "too_long", HeaderTimeout: "timeout", HeaderTruncated: "truncated",
}

func (r HeaderRefusal) String() string {
	if int(r) < len(headerRefusalLabels) && headerRefusalLabels[r] != "" {
		return headerRefusalLabels[r]
	}
	return "unknown"
}

// explain is the rate-limited log line's wording.
func (r HeaderRefusal) explain() string {
	switch r {
	case HeaderUntrusted:
		return "a PROXY protocol header from a source outside the trusted ranges"
	case HeaderMissing:
		return "a trusted source sent no PROXY protocol header"
	case HeaderInvalid:
		return "an invalid PROXY protocol header"
	case HeaderTooLong:
		return "a PROXY protocol header over its size bound"
	case HeaderTimeout:
		return "a PROXY protocol header not complete in time"
	case HeaderTruncated:
		return "the peer closed within its PROXY protocol header"
	}
	return "a PROXY protocol header refused"
}

// HeaderObserver is implemented by an Observer that counts refused PROXY
// protocol headers. It is separate from Observer so that observers that
// do not care need not change.
type HeaderObserver interface {
	HeaderRefused(r HeaderRefusal)
}

// ErrProxyHeader is wrapped by the error of every connection closed at its
// PROXY protocol header; errors.As finds the *HeaderError.
var ErrProxyHeader = errors.New("PROXY protocol header refused")

// HeaderError is the error of a connection closed at its header.
type HeaderError struct {
	Refusal HeaderRefusal
	Err     error // the parser's error, or nil
}

func (e *HeaderError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", ErrProxyHeader, e.Refusal.explain(), e.Err)
	}
	return fmt.Sprintf("%s: %s", ErrProxyHeader, e.Refusal.explain())
}

func (e *HeaderError) Unwrap() error { return ErrProxyHeader }

// mustSendHeader reports whether a connection from sa must begin with a
// PROXY protocol header.
func (s *Server) mustSendHeader(sa unix.Sockaddr) bool {
	if len(s.cfg.AcceptProxyHeader) == 0 || !s.orient.guarded() {
		return false
	}
	a := sockaddrAddrPort(sa).Addr()
	for _, p := range s.cfg.AcceptProxyHeader {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// readProxyHeader reads the PROXY protocol header into a buffer of its
// bound, parsing what has arrived after every read, and moves on to the
// handshake once it is whole; what came after it is the start of the TLS
// stream and goes to the engine.
func (c *conn) readProxyHeader() bool {
	moved := false
	for c.phase == phaseProxyHeader && c.tls.readable && !c.tls.readEOF {
		if c.header == nil {
			c.header = make([]byte, 0, proxyproto.MaxHeaderLen)
		}
		n, err := c.tls.read(c.header[len(c.header):cap(c.header)])
		switch {
		case n > 0:
			c.header = c.header[:len(c.header)+n]
			c.lastActive = c.l.now
			moved = true
			c.parseProxyHeader()
		case err == io.EOF && len(c.header) == 0:
			// A load balancer's TCP health check: connect, close, nothing
			// said. Not a refusal: counted and logged (at debug) as the
			// same silent close a direct health check is.
			c.phase = phaseHandshake
			c.end(ReasonHandshake, errClosedSilently)
		case err == io.EOF:
			c.refuseHeader(HeaderTruncated, nil)
		case err != nil:
			c.end(ReasonTLSRead, err)
		}
	}
	return moved
}

// parseProxyHeader acts on what Parse makes of the bytes so far.
func (c *conn) parseProxyHeader() {
	h, n, err := proxyproto.Parse(c.header)
	switch {
	case errors.Is(err, proxyproto.ErrIncomplete):
		return
	case errors.Is(err, proxyproto.ErrNotHeader):
		c.refuseHeader(HeaderMissing, nil)
		return
	case errors.Is(err, proxyproto.ErrTooLong):
		c.refuseHeader(HeaderTooLong, err)
		return
	case err != nil:
		c.refuseHeader(HeaderInvalid, err)
		return
	}
	rest := c.header[n:]
	c.header = nil
	if !h.Local && !c.takeSource(h.Source) {
		return
	}
	if !h.Local {
		c.proxiedDst = netip.AddrPortFrom(h.Dest.Addr().Unmap(), h.Dest.Port())
	}
	c.phase = phaseHandshake
	if len(rest) == 0 {
		return
	}
	c.heardTLS = true
	fed := len(rest)
	for len(rest) > 0 {
		k := c.eng.Feed(rest)
		if k == 0 {
			c.end(ReasonInternalError, errors.New("the engine took no input after the PROXY header"))
			return
		}
		rest = rest[k:]
	}
	c.chargeHandshake(fed)
}

// takeSource makes the header's client address the connection's, and
// counts its handshake against that source from now on. It reports false
// when that source is over its handshake limit with no one to evict, and
// the connection was closed.
func (c *conn) takeSource(src netip.AddrPort) bool {
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	c.client = src.String()
	c.peerAddr = addrPortSockaddr(src)
	if c.hs == nil {
		return true
	}
	victims, refused := c.l.srv.guard.setSource(c.hs, src.Addr())
	c.l.evictAll(victims)
	if refused != 0 {
		c.l.srv.cfg.Observer.Refused(refused)
		c.l.logLimit("connection refused after its PROXY protocol header: "+c.l.srv.cfg.explain(refused), nil)
		c.end(ReasonRefused, fmt.Errorf("%s for %s", refused, src.Addr()))
		return false
	}
	return true
}

// refuseHeader closes a connection for its header: counted, logged at most
// once a second per loop and reason, and closed before any handshake.
func (c *conn) refuseHeader(r HeaderRefusal, err error) {
	if o, ok := c.l.srv.cfg.Observer.(HeaderObserver); ok {
		o.HeaderRefused(r)
	}
	c.l.logLimit("connection closed: "+r.explain(), err)
	c.header = nil
	c.end(ReasonProxyHeader, &HeaderError{Refusal: r, Err: err})
}

// refuseUntrustedHeader closes a connection from a source outside the
// trusted ranges whose first bytes begin a PROXY header, when moat accepts
// headers at all. It reports whether it did.
func (c *conn) refuseUntrustedHeader(first []byte) bool {
	if c.heardTLS || c.viaProxy || len(c.l.srv.cfg.AcceptProxyHeader) == 0 || !c.o.guarded() || !proxyproto.LooksLikeHeader(first) {
		return false
	}
	c.refuseHeader(HeaderUntrusted, nil)
	return true
}

// addrPortSockaddr is the socket address of ap.
func addrPortSockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}
