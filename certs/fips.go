package certs

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/fips140"
	"crypto/rsa"
	"crypto/x509"
	"errors"
)

// fipsMode reports whether Go's FIPS 140-3 mode is on (GODEBUG=fips140=on
// or only, or a GOFIPS140 build). A variable so that tests can turn it on.
var fipsMode = fips140.Enabled

// errNoFIPSChain refuses a peer none of whose verified chains FIPS 140-3
// mode approves.
var errNoFIPSChain = errors.New("no certificate chain to the CA bundle uses only keys FIPS 140-3 mode approves (RSA of at least 2048 bits, ECDSA P-256, P-384 or P-521, Ed25519)")

// fipsChains keeps, in FIPS 140-3 mode, the verified chains every
// certificate of which has an approved key. crypto/tls applies this rule to
// the chains it verifies itself; moat verifies chains in its own callbacks
// too (a reloaded CA bundle, the Workload API's bundles, --verify-*, CRLs),
// and applies the same rule there so that FIPS mode means the same whoever
// verifies. Outside FIPS mode chains is returned unchanged.
func fipsChains(chains [][]*x509.Certificate) ([][]*x509.Certificate, error) {
	if !fipsMode() {
		return chains, nil
	}
	var kept [][]*x509.Certificate
	for _, chain := range chains {
		if len(chain) > 0 && allFIPSKeys(chain) {
			kept = append(kept, chain)
		}
	}
	if len(kept) == 0 {
		return nil, errNoFIPSChain
	}
	return kept, nil
}

func allFIPSKeys(chain []*x509.Certificate) bool {
	for _, c := range chain {
		if !fipsKey(c) {
			return false
		}
	}
	return true
}

// fipsKey reports whether c's public key is one FIPS 140-3 mode approves
// for certificates.
func fipsKey(c *x509.Certificate) bool {
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		return k.N.BitLen() >= 2048
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return true
		}
	case ed25519.PublicKey:
		return true
	}
	return false
}
