package certs

import (
	"fmt"
	"slices"
	"strings"
)

// URI rules (--allow-uri) match a URI SAN exactly, or with wildcards in the
// path, as ghostunnel's --allow-uri does, so that command lines migrate
// unchanged:
//
//	spiffe://cluster.local/ns/shop/sa/*   one path segment: .../sa/web, not .../sa/web/x
//	spiffe://cluster.local/ns/shop/**     one or more segments: .../shop/sa/web
//
// A wildcard stands for a whole path segment; "**" may only be the last one.
// The scheme and the authority (the trust domain) are always literal, so a
// rule can never admit another trust domain.
//
// A spiffe:// URI matches nothing unless it is a valid SPIFFE ID (see
// checkSPIFFEID), and a spiffe:// rule must be able to match a valid one.

// CheckURIPattern says why p cannot be an --allow-uri rule, or returns nil.
func CheckURIPattern(p string) error {
	scheme, rest, ok := strings.Cut(p, "://")
	if !ok || scheme == "" {
		return fmt.Errorf("%q: want an absolute URI such as spiffe://trust.domain/path", p)
	}
	authority, path, _ := strings.Cut(rest, "/")
	switch {
	case strings.Contains(scheme, "*") || strings.Contains(authority, "*"):
		return fmt.Errorf("%q: wildcards are allowed in the path only, never in the scheme or trust domain", p)
	case authority == "":
		return fmt.Errorf("%q: no trust domain (host) after ://", p)
	}
	segs := strings.Split(path, "/")
	for i, s := range segs {
		switch {
		case s == "**" && i != len(segs)-1:
			return fmt.Errorf("%q: ** must be the last path segment", p)
		case s != "*" && s != "**" && strings.Contains(s, "*"):
			return fmt.Errorf("%q: a wildcard must be a whole path segment (/*/ for one segment, /** at the end for the rest)", p)
		}
	}
	if isSPIFFE(p) {
		if err := checkSPIFFEID(shortestMatch(p)); err != nil {
			return fmt.Errorf("%q: could only match invalid SPIFFE IDs, which are always refused: %w", p, err)
		}
	}
	return nil
}

// shortestMatch is the shortest URI a valid pattern p matches: "x", a valid
// SPIFFE path segment, for each wildcard. When it is not a valid SPIFFE ID,
// no match of p is: every match shares its literal parts and is at least as
// long.
func shortestMatch(p string) string {
	prefix, path, _ := splitAfterAuthority(p)
	if !strings.Contains(path, "*") {
		return p
	}
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if s == "*" || s == "**" {
			segs[i] = "x"
		}
	}
	return prefix + "/" + strings.Join(segs, "/")
}

// matchURI reports whether uri matches the rule pattern (see CheckURIPattern).
func matchURI(pattern, uri string) bool {
	if isSPIFFE(uri) && checkSPIFFEID(uri) != nil {
		return false
	}
	if !strings.Contains(pattern, "*") {
		return pattern == uri
	}
	prefix, path, ok := splitAfterAuthority(pattern)
	uprefix, upath, uok := splitAfterAuthority(uri)
	if !ok || !uok || prefix != uprefix {
		return false
	}
	psegs, usegs := strings.Split(path, "/"), strings.Split(upath, "/")
	for i, p := range psegs {
		switch {
		case p == "**":
			return i < len(usegs) && !slices.Contains(usegs[i:], "")
		case i >= len(usegs):
			return false
		case p == "*":
			if usegs[i] == "" {
				return false
			}
		case p != usegs[i]:
			return false
		}
	}
	return len(psegs) == len(usegs)
}

// splitAfterAuthority splits "scheme://authority/path" into
// "scheme://authority" and "path".
func splitAfterAuthority(u string) (prefix, path string, ok bool) {
	i := strings.Index(u, "://")
	if i < 0 {
		return "", "", false
	}
	j := strings.IndexByte(u[i+3:], '/')
	if j < 0 {
		return u, "", true
	}
	return u[:i+3+j], u[i+3+j+1:], true
}

// Check says why the policy cannot be used, as a *PolicyError, or returns
// nil: a malformed URI rule, or AllowAll next to rules it would make
// pointless (ErrAllowAllWithRules; ghostunnel refuses that combination too).
func (p Policy) Check() error {
	if p.AllowAll && len(p.CNs)+len(p.OUs)+len(p.DNSNames)+len(p.URIs) > 0 {
		return &PolicyError{Rule: RuleAllowAll, Err: ErrAllowAllWithRules}
	}
	for _, u := range p.URIs {
		if err := CheckURIPattern(u); err != nil {
			return &PolicyError{Rule: RuleURIs, Err: err}
		}
	}
	return nil
}
