package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/moat-proxy/moat/tlsstate"
)

// Several services may share one listener and be told apart by the name a
// client asks for (SNI). The server's Config then holds what applies before
// the ClientHello is read (limits, the ClientHello and handshake deadlines,
// accept-time metrics), and Config.Route picks the service's own Config
// once the handshake names it; its TLS configuration was chosen inside the
// handshake by the same name (see cmd's router).

// ErrNoRoute ends a connection whose finished handshake names no service;
// it means the TLS configuration and Config.Route disagree.
var ErrNoRoute = errors.New("no service for the server name")

// NewRoute returns cfg, with its defaults set, as a Config.Route result.
func NewRoute(cfg Config) *Config {
	cfg.setDefaults()
	return &cfg
}

// route switches the connection to the settings of the service its
// handshake chose, which count it from here on. It reports false when no
// service answers to the name.
func (c *conn) route(cs *tls.ConnectionState) bool {
	pick := c.l.srv.cfg.Route
	if pick == nil {
		return true
	}
	r := pick(cs.ServerName)
	if r == nil {
		return false
	}
	if r != c.cfg {
		c.cfg = r
		r.Observer.Accepted()
	}
	return true
}

// routeFailure gives a handshake that failed on a shared listener to the
// service its name asked for, if one answers to it, so that a client
// refused by that service's client authentication is logged and counted
// as that service's. A name no service answers to was refused for that
// (unrecognized_name): the error says so rather than what crypto/tls says.
func (c *conn) routeFailure(name string, err error) error {
	pick := c.l.srv.cfg.Route
	if pick == nil || c.cfg != &c.l.srv.cfg {
		return err
	}
	r := pick(name)
	if r == nil {
		if tlsstate.IsNoCertificatesConfigured(err) {
			return fmt.Errorf("%w %q: unrecognized_name sent", ErrNoRoute, name)
		}
		return err
	}
	c.cfg = r
	r.Observer.Accepted()
	return err
}
