package certs

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// A URI whose scheme is spiffe, in any case, is held to the SPIFFE ID rules
// (https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md): a
// lowercase "spiffe://", a trust domain of [a-z0-9.-_], a path of non-empty
// segments of [a-zA-Z0-9.-_] that are neither "." nor "..", no trailing
// slash, and nothing else: no userinfo, port, query, fragment or
// percent-encoding. A client certificate naming an invalid one is refused
// whatever the allow rules say, because receivers that compare or split
// SPIFFE IDs (the upstream, through the PROXY header's TypeSPIFFEID TLV,
// among them) may read "spiffe://td/ns/a/../b" as ns/b.

// Lengths bounded by the SPIFFE ID specification, section 2.3.
const (
	maxSPIFFEIDLen    = 2048
	maxTrustDomainLen = 255
)

// isSPIFFE reports whether uri's scheme is spiffe. Schemes are
// case-insensitive (RFC 3986, section 3.1), so "SPIFFE:" counts too, and is
// then refused by checkSPIFFEID.
func isSPIFFE(uri string) bool {
	scheme, _, ok := strings.Cut(uri, ":")
	return ok && strings.EqualFold(scheme, "spiffe")
}

// checkSPIFFEID says why id is not a valid SPIFFE ID, or returns nil. The
// grammar is go-spiffe's spiffeid package, kept by the authors of the
// specification; the length limits it leaves to callers are checked here.
func checkSPIFFEID(id string) error {
	if len(id) > maxSPIFFEIDLen {
		return fmt.Errorf("longer than %d bytes", maxSPIFFEIDLen)
	}
	parsed, err := spiffeid.FromString(id)
	if err != nil {
		return err
	}
	if len(parsed.TrustDomain().Name()) > maxTrustDomainLen {
		return fmt.Errorf("trust domain longer than %d bytes", maxTrustDomainLen)
	}
	return nil
}

// checkCertSPIFFEIDs says why c names an invalid SPIFFE ID, or returns nil.
// It reads the URI SANs as they were signed: crypto/x509 keeps them as
// url.URL values, and url.URL.String() lowercases the scheme and drops an
// empty fragment, so "SPIFFE://td/x" and "spiffe://td/x#" would pass.
func checkCertSPIFFEIDs(c *x509.Certificate) error {
	uris, err := uriSANs(c)
	if err != nil {
		return err
	}
	for _, u := range uris {
		if !isSPIFFE(u) {
			continue
		}
		if err := checkSPIFFEID(u); err != nil {
			return fmt.Errorf("URI SAN %q is not a valid SPIFFE ID: %w", shorten(u), err)
		}
	}
	return nil
}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// errMalformedSAN should not be seen: crypto/x509 has parsed the same
// extension without error before a certificate reaches us.
var errMalformedSAN = errors.New("malformed subject alternative name extension")

// uriSANs returns c's URI SANs (GeneralName [6] uniformResourceIdentifier,
// RFC 5280 section 4.2.1.6) byte for byte.
func uriSANs(c *x509.Certificate) ([]string, error) {
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		var seq asn1.RawValue
		rest, err := asn1.Unmarshal(ext.Value, &seq)
		if err != nil || len(rest) > 0 || seq.Class != asn1.ClassUniversal || seq.Tag != asn1.TagSequence {
			return nil, errMalformedSAN
		}
		var uris []string
		for names := seq.Bytes; len(names) > 0; {
			var name asn1.RawValue
			if names, err = asn1.Unmarshal(names, &name); err != nil {
				return nil, errMalformedSAN
			}
			if name.Class == asn1.ClassContextSpecific && name.Tag == 6 {
				uris = append(uris, string(name.Bytes))
			}
		}
		return uris, nil // crypto/x509 refuses a second SAN extension
	}
	return nil, nil
}

// shorten bounds a peer-chosen string quoted in an error, which ends up in
// a log line.
func shorten(s string) string {
	const limit = 128
	if len(s) <= limit {
		return s
	}
	return s[:limit] + fmt.Sprintf("...(%d bytes)", len(s))
}
