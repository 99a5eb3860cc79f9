package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// A Workload API Source takes its certificate and key from the X.509-SVID
// the SPIFFE Workload API (a SPIRE agent, for example) hands this process,
// and the CAs it verifies peers against from the trust bundles the API
// sends with it. go-spiffe's workloadapi.X509Source keeps the stream open:
// every SVID or bundle the agent pushes replaces the material in service in
// one atomic swap, as a file reload does, so new handshakes use the new SVID
// and open connections are untouched. Nothing is written to disk.
//
//	src, err := certs.NewWorkloadSource("unix:///run/spire/agent.sock", 30*time.Second)
//	go src.Watch(ctx, onReload)      // reports each new SVID, and a lost agent once
//	if err := src.Await(ctx); err != nil { // the first SVID, or why none came in time
//		return err
//	}
//
// When the agent goes away the last SVID stays in service until it expires;
// the loss is reported once, and go-spiffe reconnects with backoff.

// Workload API reconnection backoff: the first retry after
// workloadBackoffMin, doubling up to workloadBackoffMax.
const (
	workloadBackoffMin = 250 * time.Millisecond
	workloadBackoffMax = 10 * time.Second
)

// WaitingForSVID is why a Workload API Source is not ready before its first
// SVID: the /readyz body.
const WaitingForSVID = "waiting for an SVID from the Workload API"

// workload is the Workload API side of a Source.
type workload struct {
	addr    string
	timeout time.Duration // for the first SVID
	cancel  context.CancelFunc
	first   chan struct{} // closed when the first SVID is in service
	stopped chan struct{} // closed when the X509Source is closed or could not start

	mu      sync.Mutex
	fatal   error // the X509Source could not start (bad address, watch cancelled)
	lastErr error // the latest watch failure, for the timeout message
	lost    bool  // the stream failed since the last SVID arrived
	changed bool  // new material not yet reported to Watch
	lostErr error // a loss not yet reported to Watch
	notify  chan struct{}
}

// CheckWorkloadAddr reports an address go-spiffe cannot dial:
// unix:///path or tcp://IP:port.
func CheckWorkloadAddr(addr string) error {
	if addr == "" {
		return errors.New("empty Workload API address")
	}
	if err := workloadapi.ValidateAddress(addr); err != nil {
		return fmt.Errorf("%q: %v", addr, err)
	}
	return nil
}

// NewWorkloadSource starts watching the Workload API at addr and returns at
// once; the Source serves nothing until the first SVID arrives (see Await,
// which waits up to timeout for it).
func NewWorkloadSource(addr string, timeout time.Duration) (*Source, error) {
	if err := CheckWorkloadAddr(addr); err != nil {
		return nil, err
	}
	if timeout <= 0 {
		return nil, errors.New("the Workload API timeout must be positive")
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &workload{
		addr: addr, timeout: timeout, cancel: cancel,
		first: make(chan struct{}), stopped: make(chan struct{}), notify: make(chan struct{}, 1),
	}
	s := &Source{wl: w}
	s.current.Store(&material{})
	go s.runWorkload(ctx)
	return s, nil
}

// FromWorkloadAPI reports whether the Source takes its material from the
// Workload API.
func (s *Source) FromWorkloadAPI() bool { return s.wl != nil }

// WorkloadAddr is the Workload API address of the Source ("" for others).
func (s *Source) WorkloadAddr() string {
	if s.wl == nil {
		return ""
	}
	return s.wl.addr
}

// runWorkload opens go-spiffe's X509Source, which blocks until the first
// SVID, and then takes every update into service until ctx ends.
func (s *Source) runWorkload(ctx context.Context) {
	w := s.wl
	defer close(w.stopped)
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(
		workloadapi.WithAddr(w.addr),
		workloadapi.WithLogger(w),
		workloadapi.WithBackoffStrategy(backoffStrategy{}),
	))
	if err != nil {
		if ctx.Err() == nil {
			w.mu.Lock()
			w.fatal = err
			w.mu.Unlock()
		}
		return
	}
	defer src.Close()
	s.takeSVID(src)
	for {
		select {
		case <-ctx.Done():
			return
		case <-src.Updated():
			s.takeSVID(src)
		}
	}
}

// takeSVID puts the X509Source's current SVID into service. The trust
// bundles stay a live view of the X509Source: a peer is verified against the
// bundle of its own trust domain as the Workload API last sent it.
func (s *Source) takeSVID(src *workloadapi.X509Source) {
	w := s.wl
	svid, err := src.GetX509SVID()
	if err != nil || len(svid.Certificates) == 0 {
		return // unreachable once X509Source has started; keep what serves
	}
	cert := &tls.Certificate{PrivateKey: svid.PrivateKey, Leaf: svid.Certificates[0]}
	for _, c := range svid.Certificates {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	m := &material{cert: cert, bundles: src}
	if b, err := src.GetX509BundleForTrustDomain(svid.ID.TrustDomain()); err == nil {
		m.pool = poolOf(b)
		m.cas = b.X509Authorities() // what --crl files are verified against
	}
	s.current.Store(m)
	w.mu.Lock()
	w.lost, w.lostErr, w.changed = false, nil, true
	w.mu.Unlock()
	w.wake()
	select {
	case <-w.first:
	default:
		close(w.first)
	}
}

func poolOf(b *x509bundle.Bundle) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range b.X509Authorities() {
		pool.AddCert(c)
	}
	return pool
}

func (w *workload) wake() {
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// Await waits until the first SVID is in service. It fails when none came
// within the Source's timeout, naming the address and the last error, or at
// once when the address cannot be used at all.
func (s *Source) Await(ctx context.Context) error {
	w := s.wl
	if w == nil {
		return nil
	}
	timer := time.NewTimer(w.timeout)
	defer timer.Stop()
	select {
	case <-w.first:
		return nil
	case <-w.stopped:
		select {
		case <-w.first:
			return nil
		default:
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		return fmt.Errorf("the Workload API at %s: %v", w.addr, oneLine(w.fatal))
	case <-timer.C:
		w.mu.Lock()
		defer w.mu.Unlock()
		msg := fmt.Sprintf("no SVID from the Workload API at %s within %s", w.addr, w.timeout)
		if w.lastErr != nil {
			msg += ": " + oneLine(w.lastErr)
		}
		return errors.New(msg)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Waiting says why the Source cannot serve yet: no SVID has arrived, or the
// one in service expired while the Workload API was away. It is "" when an
// unexpired SVID is in service, and always for other Sources.
func (s *Source) Waiting() string {
	if s.wl == nil {
		return ""
	}
	c := s.Certificate()
	switch {
	case c == nil:
		return WaitingForSVID
	case c.Leaf != nil && time.Now().After(c.Leaf.NotAfter):
		return "the SVID from the Workload API expired at " + c.Leaf.NotAfter.UTC().Format(time.RFC3339) + "; " + WaitingForSVID
	}
	return ""
}

// watchWorkload reports new SVIDs (nil) and a lost Workload API (the error,
// once per loss) to onReload until ctx ends, then closes the connection.
func (s *Source) watchWorkload(ctx context.Context, onReload func(error)) {
	w := s.wl
	defer w.cancel()
	for {
		w.mu.Lock()
		lost, changed := w.lostErr, w.changed
		w.lostErr, w.changed = nil, false
		w.mu.Unlock()
		if lost != nil {
			onReload(lost)
		}
		if changed {
			onReload(nil)
		}
		select {
		case <-ctx.Done():
			return
		case <-w.notify:
		}
	}
}

// Close stops a Workload API Source's connection; other Sources have
// nothing to close.
func (s *Source) Close() {
	if s.wl != nil {
		s.wl.cancel()
		<-s.wl.stopped
	}
}

// Errorf is where go-spiffe reports a failed watch, before each reconnect:
// remembered for Await's message, and reported to Watch once per loss.
func (w *workload) Errorf(format string, args ...any) {
	var err error
	for _, a := range args {
		if e, ok := a.(error); ok {
			err = e
		}
	}
	if err == nil {
		err = fmt.Errorf(format, args...)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lastErr = err
	select {
	case <-w.first:
	default:
		return // Await reports failures before the first SVID
	}
	if w.lost {
		return
	}
	w.lost = true
	w.lostErr = &WorkloadLostError{Addr: w.addr, Err: err}
	w.wake()
}

// Debugf, Infof and Warnf drop go-spiffe's other messages: reconnect
// delays and stream starts, which would log a line a second while the agent
// is away.
func (w *workload) Debugf(string, ...any) {}
func (w *workload) Infof(string, ...any)  {}
func (w *workload) Warnf(string, ...any)  {}

// WorkloadLostError is reported to Watch when the Workload API stream fails
// after an SVID was in service; that SVID stays in service.
type WorkloadLostError struct {
	Addr string
	Err  error
}

func (e *WorkloadLostError) Error() string {
	return "lost the Workload API at " + e.Addr + " (" + oneLine(e.Err) + "); keeping the SVID in service until it expires, reconnecting"
}

func (e *WorkloadLostError) Unwrap() error { return e.Err }

// oneLine flattens an error (gRPC's carry quoted causes) for a log field.
func oneLine(err error) string {
	if err == nil {
		return "unknown error"
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// backoffStrategy paces reconnects to the Workload API: doubling from
// workloadBackoffMin to workloadBackoffMax, and back to the minimum once an
// update arrives (go-spiffe calls Reset).
type backoffStrategy struct{}

func (backoffStrategy) NewBackoff() workloadapi.Backoff { return &backoff{} }

type backoff struct{ next time.Duration }

func (b *backoff) Next() time.Duration {
	if b.next == 0 {
		b.next = workloadBackoffMin
	}
	d := b.next
	b.next = min(2*b.next, workloadBackoffMax)
	return d
}

func (b *backoff) Reset() { b.next = 0 }

// svidTrustDomainPool returns the CAs a peer's chain must reach when the
// trust bundles come from the Workload API: the bundle of the trust domain
// of the peer's SPIFFE ID.
func svidTrustDomainPool(bundles x509bundle.Source, leaf *x509.Certificate) (*x509.CertPool, error) {
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return nil, fmt.Errorf("not an X.509-SVID, so no trust bundle to verify it with: %v", err)
	}
	b, err := bundles.GetX509BundleForTrustDomain(id.TrustDomain())
	if err != nil {
		return nil, fmt.Errorf("no trust bundle from the Workload API for trust domain %q", id.TrustDomain().Name())
	}
	return poolOf(b), nil
}

// ClientTLSConfig is a client tls.Config (TLS 1.2 and up) for a Workload
// API Source: it presents the SVID in service to servers that ask for a
// client certificate, and verifies the server's chain, for server
// authentication, against the trust bundle in service at the moment of the
// handshake for the server's trust domain, then applies check. serverName
// is sent as SNI. crypto/tls's own verification is off because its RootCAs
// cannot follow a rotating bundle; VerifyConnection runs for every
// handshake, resumed ones included.
func (s *Source) ClientTLSConfig(serverName string, check ServerCheck) *tls.Config {
	check.Roots, check.RootsFor = nil, func(leaf *x509.Certificate) (*x509.CertPool, error) {
		pool, err := s.current.Load().rootsFor(leaf)
		if err != nil {
			return nil, fmt.Errorf("server certificate %s: %w", Identity(leaf), err)
		}
		return pool, nil
	}
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		CipherSuites:         TLS12CipherSuites(),
		ServerName:           serverName,
		GetClientCertificate: s.GetClientCertificate,
		InsecureSkipVerify:   true, // VerifyConnection below verifies instead
		VerifyConnection:     check.Verify,
	}
}
