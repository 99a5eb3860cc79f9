package proxy

import (
	"crypto/tls"

	"github.com/moat-proxy/moat/tlsstate"
)

// orientation is everything a connection's mode decides, built once per
// server: which socket is accepted and which dialled, the order of the
// phases, whether the accepted side is a stranger speaking TLS (and so
// guarded before it is authenticated), and which way bytes count. Both
// modes share one relay; the rest of proxy/ asks the orientation instead
// of testing the mode.
type orientation struct {
	tlsAccepted bool // server mode: the accepted socket speaks TLS
}

func orient(m Mode) orientation { return orientation{tlsAccepted: m == ModeServer} }

// accepted is the socket moat accepted: the TLS one in server mode, the
// plaintext one in client mode.
func (o orientation) accepted(c *conn) *side {
	if o.tlsAccepted {
		return &c.tls
	}
	return &c.pln
}

// dialled is the socket moat connects: the plaintext upstream in server
// mode, the TLS server in client mode.
func (o orientation) dialled(c *conn) *side {
	if o.tlsAccepted {
		return &c.pln
	}
	return &c.tls
}

// engine makes the connection's TLS engine for its side of the handshake.
func (o orientation) engine(cfg *tls.Config, opts tlsstate.Options) *tlsstate.Engine {
	if o.tlsAccepted {
		return tlsstate.Server(cfg, opts)
	}
	return tlsstate.Client(cfg, opts)
}

// dialFirst says the far side is dialled before the handshake (client
// mode: the handshake runs over the dialled socket); in server mode the
// handshake comes first and the upstream is dialled only for a client
// that passed it.
func (o orientation) dialFirst() bool { return !o.tlsAccepted }

// guarded says the accepted side is a stranger speaking TLS, whose
// unfinished handshake the server bounds: a ClientHello deadline, a slot
// per source that can be evicted, and a share of the handshake memory.
func (o orientation) guarded() bool { return o.tlsAccepted }

// keepAliveAccepted says TCP keepalive goes on the accepted socket (the
// peer across the network is the TLS one), not on the dialled one.
func (o orientation) keepAliveAccepted() bool { return o.tlsAccepted }

// fromClient turns the relay's byte counts into the accepting side's
// view: what the client sent and what it received.
func (o orientation) fromClient(tlsToPln, plnToTLS int64) (from, to int64) {
	if o.tlsAccepted {
		return tlsToPln, plnToTLS
	}
	return plnToTLS, tlsToPln
}

// tally is what a connection relayed, counted as the sockets take it.
type tally struct {
	tlsToPln   int64 // plaintext decrypted and delivered to the plaintext socket
	plnToTLS   int64 // plaintext taken by the engine to encrypt
	headerLeft int   // bytes of the upstream header not yet written (not counted)
}
