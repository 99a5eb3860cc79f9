// Package proxy runs moat's data path: listeners, epoll event loops, and the
// life of each connection from accept to close. A connection has a TLS side,
// driven through a tlsstate.Engine, and a plaintext side; in server mode the
// TLS side is accepted and the plaintext side dialled, in client mode the
// other way round. Both orientations share one relay.
//
// Typical use:
//
//	srv, err := proxy.New(proxy.Config{
//		Mode:   proxy.ModeServer,
//		Listen: listen,                      // an endpoint.Address
//		Target: endpoint.NewResolver(target), // dialled through its resolved addresses
//		TLS:    tlsConfig,
//		Log:    logger,
//	})
//	go srv.Serve(ctx)
//	// on SIGTERM:
//	srv.Shutdown(shutdownCtx)
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"

	"github.com/moat-proxy/moat/endpoint"
	"github.com/moat-proxy/moat/tlsstate"
)

// Mode says which side of a connection speaks TLS.
type Mode int

const (
	// ModeServer accepts TLS and dials a plaintext upstream.
	ModeServer Mode = iota
	// ModeClient accepts plaintext and dials a TLS server.
	ModeClient
)

// Config configures a Server. Zero durations and counts take the defaults
// named on each field.
type Config struct {
	Mode   Mode
	Listen endpoint.Address   // where moat accepts connections
	Target *endpoint.Resolver // where moat connects to, with its resolved addresses
	TLS    *tls.Config        // server or client configuration for the TLS side

	Loops            int           // event loops; default GOMAXPROCS
	HighWater        int           // engine output bound per connection; default 64 KiB
	HandshakeTimeout time.Duration // accept (or dial) to handshake done; default 10s
	ConnectTimeout   time.Duration // dial of the far side; default 10s
	IdleTimeout      time.Duration // no bytes either way; 0 = none
	// MaxConnLifetime ends (resets) connections this long after accept,
	// busy or not; 0 = never. It shares the connection's one timer.
	MaxConnLifetime time.Duration
	MaxConns        int    // concurrent connections; 0 = limited by file descriptors
	ListenMode      uint32 // permission bits of a unix listening socket; 0 = umask
	// KeepAlive turns on TCP keepalive on the TLS side's socket (the peer
	// across the network): the first probe after KeepAlive of silence,
	// then every KeepAlive/3, and the connection is reset after three
	// unanswered probes. 0 = off. The plaintext side is local.
	KeepAlive time.Duration

	// MaxHandshakes caps handshakes in flight. In server mode a newcomer
	// over it evicts the oldest connection whose ClientHello has not been
	// answered, and is refused only when there is none; in client mode it
	// is refused. 0 = no cap.
	MaxHandshakes int
	// MaxHandshakesPerSource caps server-mode handshakes in flight from one
	// source (an IPv4 address or an IPv6 /64), evicting the same way among
	// that source's connections. 0 = no cap.
	MaxHandshakesPerSource int
	// ClientHelloTimeout bounds accept to an answered ClientHello in
	// server mode, so that silent connections give their slot back sooner
	// than HandshakeTimeout. Default 3s; never past HandshakeTimeout.
	ClientHelloTimeout time.Duration
	// HandshakeMemory budgets the bytes server-mode handshakes hold before
	// they finish (estimated from what the clients sent); over it, the
	// oldest unfinished handshake is cut. 0 = no budget.
	HandshakeMemory int64
	// MaxClientCertBytes bounds the client certificate chain a server-mode
	// handshake may send, enforced on the ciphertext a handshake receives
	// (this much plus an allowance for the ClientHello and the rest of the
	// client's flight). 0 = no bound. Server certificates are not bound.
	MaxClientCertBytes int
	// HandshakeRate caps new connections per second that may start a
	// handshake (a token bucket with a one-second burst); the excess is
	// closed at accept, so a flood cannot starve established connections
	// of CPU. 0 = no limit.
	HandshakeRate int

	// AcceptProxyHeader lists the source ranges (load balancers) whose
	// connections must begin with a PROXY protocol header, version 1 or 2,
	// in server mode. The client address it carries becomes the
	// connection's. Connections from these ranges without a valid header
	// within ClientHelloTimeout, and connections from elsewhere that begin
	// with one, are closed before the handshake. Empty = headers are not
	// accepted (and not looked for).
	AcceptProxyHeader []netip.Prefix

	// UpstreamHeader, when set, returns bytes written to the upstream before
	// any plaintext (the PROXY protocol header), built from the client's
	// address, the address it connected to, and the finished handshake.
	UpstreamHeader func(client, local netip.AddrPort, cs *tls.ConnectionState) []byte

	// Explain words a limit for the log lines about refusals and
	// evictions, in the caller's vocabulary (the flag to change); nil or
	// "" = the limit's label.
	Explain func(Limit) string
	// ExplainRenegotiation words the client-mode renegotiation policy
	// that refused a server's request, in the caller's vocabulary; nil or
	// "" = "the renegotiation policy".
	ExplainRenegotiation func(tls.RenegotiationSupport) string
	// ExplainHandshake, when set, may wrap a failed handshake's error with
	// the caller's words for it (the policy flag that refused the peer);
	// the wrapped error must unwrap to the original.
	ExplainHandshake func(error) error

	// Route, when set, picks the settings of the service a finished
	// handshake's server name (SNI) belongs to; nil = none answers. The
	// target, upstream header, idle timeout, log and observer then come
	// from the route's Config (made with NewRoute), and Observer here sees
	// only what happens before: refusals, evictions, failed handshakes.
	// The same name must have chosen the route's TLS configuration.
	Route func(serverName string) *Config

	// Inherit, when not nil, is the listening socket of the server this
	// one replaces (Server.HandOver); Listen is then not bound again.
	Inherit *Handover

	Log      zerolog.Logger
	Observer Observer // metrics hooks; nil = none
}

func (c *Config) setDefaults() {
	if c.Loops <= 0 {
		c.Loops = runtime.GOMAXPROCS(0)
	}
	if c.HighWater <= 0 {
		c.HighWater = tlsstate.DefaultHighWater
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	if c.ClientHelloTimeout <= 0 {
		c.ClientHelloTimeout = 3 * time.Second
	}
	c.ClientHelloTimeout = min(c.ClientHelloTimeout, c.HandshakeTimeout)
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
}

// Server accepts connections and relays them through its event loops.
type Server struct {
	cfg   Config
	ln    *listener
	loops []*loop

	budget   budget       // the relay's sizes, from HighWater
	orient   orientation  // what Mode decides for every connection
	active   atomic.Int64 // open connections, for MaxConns and Shutdown
	guard    *handshakeGuard
	rate     *rate.Limiter // Config.HandshakeRate; nil = no limit
	draining atomic.Bool
	done     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// New checks the configuration and binds the listening socket, so that a
// port in use or a bad address is reported before Serve.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if cfg.TLS == nil {
		return nil, errors.New("proxy: no TLS configuration")
	}
	ln, err := cfg.Inherit.listener()
	if cfg.Inherit == nil {
		ln, err = listen(cfg.Listen, cfg.ListenMode)
	}
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, ln: ln, done: make(chan struct{}), budget: newBudget(cfg.HighWater), orient: orient(cfg.Mode),
		guard: newHandshakeGuard(cfg.MaxHandshakes, cfg.MaxHandshakesPerSource, cfg.HandshakeMemory)}
	s.rate = newHandshakeRate(cfg.HandshakeRate)
	for i := 0; i < cfg.Loops; i++ {
		l, err := newLoop(s)
		if err != nil {
			s.closeLoops()
			ln.close()
			return nil, fmt.Errorf("event loop: %w", err)
		}
		s.loops = append(s.loops, l)
	}
	return s, nil
}

// Addr returns the address the server listens on (useful with port 0).
func (s *Server) Addr() net.Addr { return s.ln.addr }

// Serve runs the event loops until Shutdown completes or ctx is cancelled.
// Cancelling ctx closes every connection at once.
func (s *Server) Serve(ctx context.Context) error {
	for _, l := range s.loops {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			l.run()
		}()
	}
	go func() {
		select {
		case <-ctx.Done():
			s.stopListening()
			s.closeAll()
		case <-s.done:
		}
	}()
	s.wg.Wait()
	s.stopOnce.Do(func() { close(s.done) })
	s.closeLoops()
	s.ln.close()
	return nil
}

// Shutdown stops accepting, then waits for open connections to finish until
// ctx ends, when it resets the rest. It then returns an error that wraps
// ctx.Err() and says how many connections were cut.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopListening()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for s.active.Load() > 0 {
		select {
		case <-ctx.Done():
			cut := s.active.Load()
			s.closeAll()
			return fmt.Errorf("%d connection(s) still open at the shutdown deadline were reset: %w", cut, ctx.Err())
		case <-tick.C:
		}
	}
	s.closeAll()
	return nil
}

// Active returns the number of open connections.
func (s *Server) Active() int64 { return s.active.Load() }

// Draining reports whether Shutdown has begun.
func (s *Server) Draining() bool { return s.draining.Load() }

// stopListening takes the listener out of every loop, then closes it, so
// that new connections are refused by the kernel.
func (s *Server) stopListening() {
	if s.draining.Swap(true) {
		return
	}
	var wg sync.WaitGroup
	for _, l := range s.loops {
		wg.Add(1)
		if !l.post(func() { l.stopAccepting(); wg.Done() }) {
			wg.Done() // the loop has exited: it accepts nothing any more
		}
	}
	wg.Wait()
	s.ln.close()
}

// closeAll ends every connection and lets the loops exit.
func (s *Server) closeAll() {
	for _, l := range s.loops {
		l.post(l.closeAllAndStop)
	}
}

func (s *Server) closeLoops() {
	for _, l := range s.loops {
		l.close()
	}
}

func isTemporaryAcceptErr(err error) bool {
	return err == unix.ECONNABORTED || err == unix.EINTR || err == unix.EPROTO
}

// heldBytes returns the bytes the server holds in user space for its
// connections right now: engine input and output plus parked plaintext.
// Kernel socket buffers are not included. Tests use it to prove an idle
// connection holds no buffer; it asks every loop and waits for the answers.
func (s *Server) heldBytes() int64 {
	var total atomic.Int64
	var wg sync.WaitGroup
	for _, l := range s.loops {
		wg.Add(1)
		posted := l.post(func() {
			defer wg.Done()
			seen := make(map[*conn]bool)
			for _, c := range l.conns {
				if !seen[c] {
					seen[c] = true
					total.Add(int64(c.eng.Buffered() + c.toPlain.Len() + c.toTLS.Len()))
				}
			}
		})
		if !posted {
			wg.Done() // an exited loop holds no connection
		}
	}
	wg.Wait()
	return total.Load()
}
