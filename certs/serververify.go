package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"time"
)

// ServerCheck is how client mode verifies the server it connects to when
// crypto/tls's own check is not enough: when the trust bundle rotates
// (crypto/tls's RootCAs is fixed, Roots is read at each handshake), when
// the server must have a given identity (--verify-uri and its siblings: an
// X.509-SVID has a URI SAN and often no DNS name at all), or when its chain
// must be checked against CRLs. Use it as
//
//	cfg.InsecureSkipVerify = true // crypto/tls's check is replaced, not skipped
//	cfg.VerifyConnection = certs.ServerCheck{Roots: src.CAPool, Name: "db.internal"}.Verify
//
// crypto/tls runs VerifyConnection on every handshake, resumed ones
// included, so a session resumed after a CRL reload is checked again.
type ServerCheck struct {
	// Roots returns the trust bundle in service (a certificate source may
	// rotate it); it must not return nil unless RootsFor is set.
	Roots func() *x509.CertPool
	// RootsFor, when not nil, is used instead of Roots: the bundle for the
	// certificate's own trust domain (a Workload API source holds one per
	// federated domain), or why there is none.
	RootsFor func(leaf *x509.Certificate) (*x509.CertPool, error)
	// Name is the host name or IP address the certificate must carry, as
	// crypto/tls checks it, when Identities names nobody.
	Name string
	// Identities, when it names anyone (CNs, OUs, DNSNames, URIs), replaces
	// the Name check: the server is accepted when any one rule matches.
	// Its Revocation applies in either case; AllowAll is not used.
	Identities Policy
}

func (sc ServerCheck) roots(leaf *x509.Certificate) (*x509.CertPool, error) {
	if sc.RootsFor != nil {
		return sc.RootsFor(leaf)
	}
	return sc.Roots(), nil
}

// Verify is a tls.Config.VerifyConnection for a client.
func (sc ServerCheck) Verify(cs tls.ConnectionState) error {
	return sc.verify(cs.PeerCertificates, time.Now())
}

func (sc ServerCheck) verify(chain []*x509.Certificate, now time.Time) error {
	if len(chain) == 0 {
		return &AuthError{Peer: PeerServer, Reason: ReasonNoCert, Err: errors.New("the server presented no certificate")}
	}
	leaf := chain[0]
	id := Identity(leaf)
	roots, err := sc.roots(leaf)
	if err != nil {
		return &AuthError{Peer: PeerServer, Reason: ReasonUnknownCA, Identity: id, Err: err}
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: x509.NewCertPool(),
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	named := sc.Identities.names()
	if !named {
		opts.DNSName = sc.Name
	}
	for _, c := range chain[1:] {
		opts.Intermediates.AddCert(c)
	}
	chains, err := leaf.Verify(opts)
	if err != nil {
		ae := &AuthError{Peer: PeerServer, Reason: verifyReason(err), Identity: id, Err: err}
		var host x509.HostnameError
		if errors.As(err, &host) {
			ae.Reason, ae.Required = ReasonNotAllowed, "the name "+sc.Name
		}
		return ae
	}
	if chains, err = fipsChains(chains); err != nil {
		return &AuthError{Peer: PeerServer, Reason: ReasonBadCert, Identity: id, Err: err}
	}
	if err := checkCertSPIFFEIDs(leaf); err != nil {
		return &AuthError{Peer: PeerServer, Reason: ReasonBadCert, Identity: id, Err: err}
	}
	if err := sc.Identities.Revocation.check(chains, now); err != nil {
		return &AuthError{Peer: PeerServer, Reason: revocationReason(err), Identity: id, Err: err}
	}
	if named && !sc.Identities.allows(leaf) {
		return &AuthError{Peer: PeerServer, Reason: ReasonNotAllowed, Identity: id, Required: sc.Identities.Describe(),
			Err: errors.New("no identity rule matches")}
	}
	return nil
}

// names reports whether p names anyone (AllowAll aside).
func (p Policy) names() bool { return len(p.CNs)+len(p.OUs)+len(p.DNSNames)+len(p.URIs) > 0 }

// Describe lists p's rules the way Identity lists a certificate's names,
// e.g. "URI=spiffe://td/ns/db/sa/*, DNS=db.internal", for a log line.
func (p Policy) Describe() string {
	var parts []string
	add := func(kind string, vs []string) {
		for _, v := range vs {
			parts = append(parts, kind+"="+v)
		}
	}
	add("URI", p.URIs)
	add("DNS", p.DNSNames)
	add("CN", p.CNs)
	add("OU", p.OUs)
	if p.AllowAll {
		parts = append(parts, "any certificate of the CA bundle")
	}
	return strings.Join(parts, ", ")
}
