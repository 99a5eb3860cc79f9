package certs

import (
	"crypto/x509"
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestMatchURI(t *testing.T) {
	for _, tc := range []struct {
		pattern, uri string
		want         bool
	}{
		{"spiffe://td/ns/shop/sa/web", "spiffe://td/ns/shop/sa/web", true},
		{"spiffe://td/ns/shop/sa/web", "spiffe://td/ns/shop/sa/web2", false},
		{"spiffe://td/ns/shop/sa/*", "spiffe://td/ns/shop/sa/web", true},
		{"spiffe://td/ns/shop/sa/*", "spiffe://td/ns/shop/sa/web/x", false},
		{"spiffe://td/ns/shop/sa/*", "spiffe://td/ns/shop/sa", false},
		{"spiffe://td/ns/shop/sa/*", "spiffe://td/ns/shop/sa/", false},
		{"spiffe://td/ns/*/sa/web", "spiffe://td/ns/bank/sa/web", true},
		{"spiffe://td/ns/*/sa/web", "spiffe://td/ns/bank/sa/api", false},
		{"spiffe://td/ns/shop/**", "spiffe://td/ns/shop/sa/web", true},
		{"spiffe://td/ns/shop/**", "spiffe://td/ns/shop/x", true},
		{"spiffe://td/ns/shop/**", "spiffe://td/ns/shop", false},
		{"spiffe://td/ns/shop/**", "spiffe://td/ns/shopping/x", false},
		{"spiffe://td/**", "spiffe://other/ns/shop", false},
		{"spiffe://td/*", "spiffe://td.evil/x", false},
		{"spiffe://td/*", "https://td/x", false},
	} {
		if got := matchURI(tc.pattern, tc.uri); got != tc.want {
			t.Errorf("matchURI(%q, %q) = %v, want %v", tc.pattern, tc.uri, got, tc.want)
		}
	}
}

func TestPolicyCheck(t *testing.T) {
	for _, good := range []Policy{
		{URIs: []string{"spiffe://td/ns/shop/sa/web", "spiffe://td/ns/*/sa/web", "spiffe://td/**"}},
		{CNs: []string{"a"}, OUs: []string{"b"}},
		{AllowAll: true},
	} {
		if err := good.Check(); err != nil {
			t.Errorf("%+v: %v", good, err)
		}
	}
	for _, tc := range []struct {
		p    Policy
		want string
	}{
		{Policy{URIs: []string{"spiffe://*/x"}}, "path only"},
		{Policy{URIs: []string{"spiffe://td/ns/**/sa"}}, "last path segment"},
		{Policy{URIs: []string{"spiffe://td/ns/shop-*"}}, "whole path segment"},
		{Policy{URIs: []string{"web"}}, "absolute URI"},
		{Policy{URIs: []string{"spiffe:///x"}}, "trust domain"},
		{Policy{AllowAll: true, CNs: []string{"a"}}, "policy AllowAll: admits every client"},
	} {
		err := tc.p.Check()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one saying %q", tc.p, err, tc.want)
		}
	}
	var pe *PolicyError
	if err := (Policy{AllowAll: true, URIs: []string{"spiffe://td/x"}}).Check(); !errors.As(err, &pe) ||
		pe.Rule != RuleAllowAll || !errors.Is(err, ErrAllowAllWithRules) {
		t.Errorf("AllowAll with a URI rule: %v, want a PolicyError of RuleAllowAll wrapping ErrAllowAllWithRules", err)
	}
}

func TestPolicyAllowsURIWildcards(t *testing.T) {
	leaf := &x509.Certificate{}
	for _, u := range []string{"spiffe://cluster.local/ns/shop/sa/checkout"} {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		leaf.URIs = append(leaf.URIs, parsed)
	}
	if !(Policy{URIs: []string{"spiffe://cluster.local/ns/shop/sa/*"}}).allows(leaf) {
		t.Error("wildcard rule did not admit a matching SPIFFE ID")
	}
	if (Policy{URIs: []string{"spiffe://cluster.local/ns/bank/**"}}).allows(leaf) {
		t.Error("wildcard rule for another namespace admitted the client")
	}
}
