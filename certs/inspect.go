package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// LargeFlight is the first-flight size above which Inspect warns: chains
// past 16 KiB span several records, exceed common initial congestion
// windows, and have broken servers and middleboxes with fixed-size
// handshake buffers (OpenSSL-based servers among them).
const LargeFlight = 16 * 1024

// Report describes one PEM chain file.
type Report struct {
	File         string     `json:"file"`
	Certificates []CertInfo `json:"certificates"`
	// Problems are defects in the chain: wrong order, missing intermediate,
	// self-signed leaf, expired or not yet valid, oversized flight.
	Problems []string   `json:"problems"`
	Flight   FlightSize `json:"flight"`
	// Names are the server names (SNI) the leaf is chosen for when served
	// as one of several --cert pairs: its DNS and IP SANs.
	Names []string `json:"names"`
	// Overlaps are names another of the inspected files covers as well.
	Overlaps []Overlap `json:"overlaps,omitempty"`
}

// CertInfo describes one certificate of a chain.
type CertInfo struct {
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	Serial      string    `json:"serial"`
	Fingerprint string    `json:"sha256_fingerprint"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	DaysLeft    int       `json:"days_left"`
	KeyType     string    `json:"key_type"`
	KeyBits     int       `json:"key_bits"`
	IsCA        bool      `json:"is_ca"`
	SelfSigned  bool      `json:"self_signed"`
	SANCount    int       `json:"san_count"`
	SANs        []string  `json:"sans"`
	DERBytes    int       `json:"der_bytes"`
}

// Inspect reads each PEM chain file and reports its certificates, the
// problems with the chain, and the handshake flight it produces. A file it
// cannot read or parse is left out of the reports, and the error names every
// such file; the other files are still reported.
func Inspect(files ...string) ([]Report, error) {
	var reports []Report
	var chains [][]*x509.Certificate
	var errs []error
	now := time.Now()
	for _, f := range files {
		data, err := readFile(RoleCertificate, f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		chain, err := parseCertificates(data)
		if err != nil {
			errs = append(errs, &FileError{Role: RoleCertificate, Path: f, Err: err})
			continue
		}
		reports = append(reports, inspectChain(f, chain, now))
		chains = append(chains, chain)
	}
	addOverlaps(reports, chains)
	return reports, errors.Join(errs...)
}

func inspectChain(file string, chain []*x509.Certificate, now time.Time) Report {
	r := Report{File: file, Flight: estimateFlight(chain), Problems: chainProblems(chain, now), Names: serverNames(chain[0])}
	for _, c := range chain {
		r.Certificates = append(r.Certificates, describe(c, now))
	}
	if largest := max(r.Flight.TLS13, r.Flight.TLS13Hybrid, r.Flight.TLS12); largest > LargeFlight {
		r.Problems = append(r.Problems, fmt.Sprintf(
			"first flight is %d bytes in TLS 1.3 (%d with X25519MLKEM768) and %d in TLS 1.2, over %d: clients and servers with fixed handshake buffers may fail",
			r.Flight.TLS13, r.Flight.TLS13Hybrid, r.Flight.TLS12, LargeFlight))
	}
	return r
}

func describe(c *x509.Certificate, now time.Time) CertInfo {
	info := CertInfo{
		Subject:     c.Subject.String(),
		Issuer:      c.Issuer.String(),
		Serial:      c.SerialNumber.Text(16),
		Fingerprint: Fingerprint(c),
		NotBefore:   c.NotBefore,
		NotAfter:    c.NotAfter,
		DaysLeft:    int(c.NotAfter.Sub(now).Hours() / 24),
		IsCA:        c.IsCA,
		SelfSigned:  selfSigned(c),
		SANs:        sans(c),
		DERBytes:    len(c.Raw),
	}
	info.SANCount = len(info.SANs)
	info.KeyType, info.KeyBits = keyType(c)
	return info
}

func sans(c *x509.Certificate) []string {
	out := []string{}
	for _, d := range c.DNSNames {
		out = append(out, "DNS:"+d)
	}
	for _, ip := range c.IPAddresses {
		out = append(out, "IP:"+ip.String())
	}
	for _, u := range c.URIs {
		out = append(out, "URI:"+u.String())
	}
	for _, e := range c.EmailAddresses {
		out = append(out, "email:"+e)
	}
	return out
}

func keyType(c *x509.Certificate) (string, int) {
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		return "RSA", k.N.BitLen()
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name, k.Curve.Params().BitSize
	case ed25519.PublicKey:
		return "Ed25519", 256
	default:
		return c.PublicKeyAlgorithm.String(), 0
	}
}

func selfSigned(c *x509.Certificate) bool {
	// Not CheckSignatureFrom: it refuses a parent that is not a CA, which a
	// self-signed leaf is not.
	return bytes.Equal(c.RawIssuer, c.RawSubject) &&
		c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// issuedBy reports whether parent signed child.
func issuedBy(child, parent *x509.Certificate) bool {
	return bytes.Equal(child.RawIssuer, parent.RawSubject) && child.CheckSignatureFrom(parent) == nil
}

// chainProblems checks order and completeness the way a client walks the
// chain: each certificate must be followed by its issuer.
func chainProblems(chain []*x509.Certificate, now time.Time) []string {
	problems := []string{}
	leaf := chain[0]
	if leaf.IsCA && len(chain) > 1 {
		for i, c := range chain[1:] {
			if !c.IsCA {
				problems = append(problems, fmt.Sprintf("leaf is not first: certificate %d (%s) is the end-entity certificate", i+2, c.Subject))
				break
			}
		}
	}
	if selfSigned(leaf) && !leaf.IsCA {
		problems = append(problems, "leaf is self-signed: clients must trust it directly")
	}
	for i, c := range chain {
		if i+1 < len(chain) && !issuedBy(c, chain[i+1]) {
			problems = append(problems, orderProblem(chain, i))
		}
		if now.After(c.NotAfter) {
			problems = append(problems, fmt.Sprintf("certificate %d (%s) expired %s", i+1, c.Subject, c.NotAfter.Format(time.DateOnly)))
		}
		if now.Before(c.NotBefore) {
			problems = append(problems, fmt.Sprintf("certificate %d (%s) is not valid until %s", i+1, c.Subject, c.NotBefore.Format(time.RFC3339)))
		}
	}
	last := chain[len(chain)-1]
	if !last.IsCA && !selfSigned(last) && findIssuer(chain, last) < 0 {
		problems = append(problems, fmt.Sprintf(
			"missing intermediate: issuer %q of certificate %d is not in the file (fine only if clients trust it as a root)", last.Issuer.String(), len(chain)))
	}
	return problems
}

// orderProblem explains why chain[i+1] is not chain[i]'s issuer.
func orderProblem(chain []*x509.Certificate, i int) string {
	c := chain[i]
	if j := findIssuer(chain, c); j >= 0 {
		return fmt.Sprintf("out of order: certificate %d is issued by certificate %d, not by the next one", i+1, j+1)
	}
	if selfSigned(c) {
		return fmt.Sprintf("certificate %d (%s) is self-signed but is followed by others", i+1, c.Subject)
	}
	if !chain[i+1].IsCA {
		return fmt.Sprintf("out of order: certificate %d is followed by end-entity certificate %d", i+1, i+2)
	}
	return fmt.Sprintf("missing intermediate: issuer %q of certificate %d is not in the file", c.Issuer.String(), i+1)
}

func findIssuer(chain []*x509.Certificate, c *x509.Certificate) int {
	for j, p := range chain {
		if p != c && issuedBy(c, p) {
			return j
		}
	}
	return -1
}
