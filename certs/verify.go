package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/moat-proxy/moat/tlsstate"
)

// Policy says which verified client certificates are let in. A certificate
// is allowed when it matches any one rule: its subject CN, any of its OUs,
// any DNS SAN equals an entry exactly, or any URI SAN (such as a SPIFFE ID)
// matches an entry: exactly, or through path wildcards (see CheckURIPattern).
// A certificate naming an invalid SPIFFE ID is refused before any rule is
// consulted (see checkCertSPIFFEIDs).
// An empty Policy allows nobody, so a forgotten flag fails closed; AllowAll
// lets in any certificate that chains to the CA bundle.
type Policy struct {
	CNs, OUs, DNSNames, URIs []string
	AllowAll                 bool
	// Revocation, when not nil, refuses a certificate (leaf or
	// intermediate) its issuer's CRL lists, whichever rule allows it.
	Revocation *RevocationList
}

func (p Policy) allows(leaf *x509.Certificate) bool {
	if p.AllowAll || slices.Contains(p.CNs, leaf.Subject.CommonName) {
		return true
	}
	for _, ou := range leaf.Subject.OrganizationalUnit {
		if slices.Contains(p.OUs, ou) {
			return true
		}
	}
	for _, d := range leaf.DNSNames {
		if slices.Contains(p.DNSNames, d) {
			return true
		}
	}
	for _, u := range leaf.URIs {
		for _, rule := range p.URIs {
			if matchURI(rule, u.String()) {
				return true
			}
		}
	}
	return false
}

// Reason classifies a refused client. The values are stable: they are
// metric labels and log fields.
type Reason string

// Reasons a client certificate is refused.
const (
	ReasonNoCert     Reason = "no-cert"     // no certificate presented
	ReasonUnknownCA  Reason = "unknown-ca"  // does not chain to the CA bundle
	ReasonExpired    Reason = "expired"     // outside its validity period
	ReasonNotAllowed Reason = "not-allowed" // verified, but no Policy rule matches
	ReasonBadCert    Reason = "bad-cert"    // anything else: wrong key usage, malformed, an invalid SPIFFE ID
	ReasonRevoked    Reason = "revoked"     // it, or a CA of its chain, is listed by its issuer's CRL
	ReasonCRLExpired Reason = "crl-expired" // its issuer's CRL is past nextUpdate, and expired CRLs are refused
)

// PeerRole says which side's certificate an AuthError is about.
type PeerRole uint8

// The peers whose certificates moat checks.
const (
	PeerClient PeerRole = iota // server mode checks clients
	PeerServer                 // client mode checks the server
)

func (r PeerRole) String() string {
	if r == PeerServer {
		return "server"
	}
	return "client"
}

// AuthError is why a client was refused. errors.As(err, new(tls.AlertError))
// yields the alert the client is sent (see Alert).
type AuthError struct {
	Reason   Reason
	Identity string // who the certificate says the peer is, for logs
	// Required is, for ReasonNotAllowed in client mode, the identities the
	// server had to have (see Policy.Describe).
	Required string
	Peer     PeerRole
	Err      error
}

func (e *AuthError) Error() string {
	msg := e.Peer.String() + " certificate refused (" + string(e.Reason) + ")"
	if e.Identity != "" {
		msg += " for " + e.Identity
	}
	if e.Required != "" {
		msg += "; required " + e.Required
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap exposes the underlying cause and the TLS alert.
func (e *AuthError) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Alert()}
	}
	return []error{e.Err, e.Alert()}
}

// Alert is the TLS alert the client receives from a ServerTLSConfig server:
// certificate_required (116) for no-cert (TLS 1.3; crypto/tls sends
// handshake_failure (40) in TLS 1.2, which has no better alert),
// unknown_ca (48), certificate_expired (45), and bad_certificate (42) for
// not-allowed and bad-cert. access_denied (49) would describe not-allowed
// better, but crypto/tls sends bad_certificate for every error returned from
// VerifyConnection, whatever the error wraps, and Alert reports what is sent.
func (e *AuthError) Alert() tls.AlertError {
	switch e.Reason {
	case ReasonNoCert:
		return 116
	case ReasonUnknownCA:
		return 48
	case ReasonExpired:
		return 45
	default:
		return 42
	}
}

// TLS12CipherSuites returns the suites moat offers and accepts in TLS 1.2:
// ECDHE with AEAD ciphers only. crypto/tls's defaults also include the CBC
// suites, which scanners flag (LUCKY13) and no current client needs. TLS 1.3
// suites are not configurable and all AEAD. The slice is the caller's own.
func TLS12CipherSuites() []uint16 { return slices.Clone(tls12CipherSuites) }

var tls12CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ServerVerifier returns a tls.Config.VerifyConnection for a server with
// ClientAuth tls.RequireAnyClientCert: it verifies the client's chain against
// the CA bundle in service at the moment of the handshake, then applies p.
// Used this way the client is sent bad_certificate whatever the Reason;
// ServerTLSConfig arranges for the precise alerts.
func (s *Source) ServerVerifier(p Policy) func(tls.ConnectionState) error {
	return func(cs tls.ConnectionState) error {
		return verifyClient(s.current.Load(), p, cs.PeerCertificates, time.Now())
	}
}

// ServerTLSConfig is a server tls.Config (TLS 1.2 and up) serving the
// Source's certificate. A client whose server name (SNI) CheckServerName
// refuses is sent unrecognized_name (112) and the handshake ends there (see
// AsServerNameError). With requireClientCert, every handshake must present
// a client certificate that chains, for client authentication, to the CA
// bundle in service when the handshake starts, and is allowed by p; a CA
// bundle reload applies to the next handshake and to resumed sessions.
// Without it, clients are not asked for certificates
// (--disable-authentication).
func (s *Source) ServerTLSConfig(p Policy, requireClientCert bool) *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: TLS12CipherSuites(), GetCertificate: s.GetCertificate}
	refused := refuseServerName(base)
	if !requireClientCert {
		base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			if CheckServerName(hello.ServerName) != nil {
				return refused, nil
			}
			return nil, nil // base itself
		}
		return base
	}
	// Fail closed on our own verifier should the per-handshake config below
	// ever be bypassed: a nil ClientCAs would mean the system roots.
	base.ClientAuth = tls.RequireAnyClientCert
	base.VerifyConnection = s.ServerVerifier(p)
	var cache atomic.Pointer[handshakeConfig]
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if CheckServerName(hello.ServerName) != nil {
			return refused, nil
		}
		m := s.current.Load()
		if hc := cache.Load(); hc != nil && hc.m == m {
			return hc.cfg, nil
		}
		hc := &handshakeConfig{m: m, cfg: base.Clone()}
		hc.cfg.GetConfigForClient = nil
		// Trust bundles from the Workload API are chosen per peer, by the
		// trust domain of its SPIFFE ID, which crypto/tls cannot do: the
		// base config's verifier alone checks those chains.
		if m.pool != nil && m.bundles == nil {
			// crypto/tls verifies the chain itself and sends unknown_ca,
			// certificate_expired or certificate_required; our verifier, bound
			// to the same pool, still runs for the Policy and for resumed
			// sessions, which crypto/tls does not re-verify.
			hc.cfg.ClientAuth = tls.RequireAndVerifyClientCert
			hc.cfg.ClientCAs = m.pool
			hc.cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				return verifyClient(m, p, cs.PeerCertificates, time.Now())
			}
		}
		cache.Store(hc)
		return hc.cfg, nil
	}
	return base
}

// handshakeConfig is the tls.Config derived from one generation of material.
type handshakeConfig struct {
	m   *material
	cfg *tls.Config
}

// verifyClient checks a client chain (leaf first) against the CAs of m and
// against p.
func verifyClient(m *material, p Policy, chain []*x509.Certificate, now time.Time) error {
	if len(chain) == 0 {
		return &AuthError{Reason: ReasonNoCert, Err: errors.New("no client certificate presented")}
	}
	leaf := chain[0]
	id := Identity(leaf)
	pool, err := m.rootsFor(leaf)
	if err != nil {
		return &AuthError{Reason: ReasonUnknownCA, Identity: id, Err: err}
	}
	opts := x509.VerifyOptions{
		Roots:         pool,
		Intermediates: x509.NewCertPool(),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, c := range chain[1:] {
		opts.Intermediates.AddCert(c)
	}
	chains, err := leaf.Verify(opts)
	if err != nil {
		return &AuthError{Reason: verifyReason(err), Identity: id, Err: err}
	}
	if chains, err = fipsChains(chains); err != nil {
		return &AuthError{Reason: ReasonBadCert, Identity: id, Err: err}
	}
	if err := checkCertSPIFFEIDs(leaf); err != nil {
		// A malformed identity, not a policy decision: refused under any
		// rules, --allow-all included, and reported as the certificate's
		// fault so that the operator looks at its issuer, not at the flags.
		return &AuthError{Reason: ReasonBadCert, Identity: id, Err: err}
	}
	if err := p.Revocation.check(chains, now); err != nil {
		return &AuthError{Reason: revocationReason(err), Identity: id, Err: err}
	}
	if !p.allows(leaf) {
		return &AuthError{Reason: ReasonNotAllowed, Identity: id, Err: errors.New("no allow rule matches")}
	}
	return nil
}

func verifyReason(err error) Reason {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		return ReasonUnknownCA
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return ReasonExpired
	default:
		return ReasonBadCert
	}
}

// AsAuthError classifies the error a server's Handshake returned. Refusals
// from our verifier are *AuthError already; refusals crypto/tls makes itself
// under ServerTLSConfig (unknown CA, expired, no certificate) are translated,
// so metrics and logs see one set of Reasons. Other errors return false.
func AsAuthError(err error) (*AuthError, bool) {
	var ae *AuthError
	if errors.As(err, &ae) {
		return ae, true
	}
	var cve *tls.CertificateVerificationError
	if errors.As(err, &cve) {
		ae = &AuthError{Reason: verifyReason(cve.Err), Err: cve.Err}
		if len(cve.UnverifiedCertificates) > 0 {
			ae.Identity = Identity(cve.UnverifiedCertificates[0])
		}
		return ae, true
	}
	// crypto/tls has no typed error for a missing client certificate.
	if tlsstate.IsNoClientCert(err) {
		return &AuthError{Reason: ReasonNoCert, Err: err}, true
	}
	return nil, false
}

// maxIdentityNames bounds how many SANs Identity lists: a log line should not
// grow with a 600-name certificate.
const maxIdentityNames = 4

// Identity describes who a certificate names: its CN, OUs and SANs, e.g.
// "CN=web, URI=spiffe://cluster.local/ns/a/sa/web".
func Identity(c *x509.Certificate) string {
	var parts []string
	if c.Subject.CommonName != "" {
		parts = append(parts, "CN="+c.Subject.CommonName)
	}
	for _, ou := range c.Subject.OrganizationalUnit {
		parts = append(parts, "OU="+ou)
	}
	var sans []string
	for _, u := range c.URIs {
		sans = append(sans, "URI="+u.String())
	}
	for _, d := range c.DNSNames {
		sans = append(sans, "DNS="+d)
	}
	for _, ip := range c.IPAddresses {
		sans = append(sans, "IP="+ip.String())
	}
	if len(sans) > maxIdentityNames {
		sans = append(sans[:maxIdentityNames], fmt.Sprintf("+%d more", len(sans)-maxIdentityNames))
	}
	return strings.Join(append(parts, sans...), ", ")
}
