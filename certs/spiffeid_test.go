package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/url"
	"strings"
	"testing"
)

// spiffeIDCases are URIs with the spiffe scheme, each valid or invalid under
// the SPIFFE ID specification, with the words checkSPIFFEID's error uses.
var spiffeIDCases = []struct {
	id   string
	want string // "" for a valid ID
}{
	{"spiffe://td", ""},
	{"spiffe://td/ns/shop/sa/web", ""},
	{"spiffe://cluster.local/a-b_c.d/A9", ""},
	{"spiffe://td/..x/x..", ""},
	{"spiffe://" + strings.Repeat("t", 255) + "/x", ""},
	{"spiffe://td/" + strings.Repeat("x", 2048-len("spiffe://td/")), ""},

	{"spiffe://td/ns/../sa/x", "dot segments"},
	{"spiffe://td/ns/./sa/x", "dot segments"},
	{"spiffe://td/..", "dot segments"},
	{"spiffe://td/ns//sa", "empty segments"},
	{"spiffe://td/ns/", "trailing slash"},
	{"spiffe://td/", "trailing slash"},
	{"spiffe://td/ns%2Fsa", "path segment characters"},
	{"spiffe://td/a%41", "path segment characters"},
	{"spiffe://td/x?y=1", "path segment characters"},
	{"spiffe://td/x?", "path segment characters"},
	{"spiffe://td/x#frag", "path segment characters"},
	{"spiffe://td/x#", "path segment characters"},
	{"spiffe://td/a b", "path segment characters"},
	{"spiffe://td/caf\u00e9", "path segment characters"},
	{"spiffe://td/*", "path segment characters"},
	{"spiffe://user@td/x", "trust domain characters"},
	{"spiffe://td:443/x", "trust domain characters"},
	{"spiffe://TD/x", "trust domain characters"},
	{"spiffe://t%64/x", "trust domain characters"},
	{"spiffe://[::1]/x", "trust domain characters"},
	{"spiffe:///x", "trust domain is missing"},
	{"spiffe://", "trust domain is missing"},
	{"SPIFFE://td/x", "scheme is missing or invalid"},
	{"spiffe:td/x", "scheme is missing or invalid"},
	{"spiffe://" + strings.Repeat("t", 256) + "/x", "trust domain longer than 255 bytes"},
	{"spiffe://td/" + strings.Repeat("x", 2049-len("spiffe://td/")), "longer than 2048 bytes"},
}

func TestCheckSPIFFEID(t *testing.T) {
	for _, tc := range spiffeIDCases {
		if !isSPIFFE(tc.id) {
			t.Errorf("isSPIFFE(%.40q) = false", tc.id)
		}
		err := checkSPIFFEID(tc.id)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("checkSPIFFEID(%.40q) = %v, want valid", tc.id, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("checkSPIFFEID(%.40q) = %v, want an error saying %q", tc.id, err, tc.want)
		}
	}
	for _, other := range []string{"https://td/../x", "urn:spiffe:td", "spiffe", "spiffex://td/x", ""} {
		if isSPIFFE(other) {
			t.Errorf("isSPIFFE(%q) = true", other)
		}
	}
}

// TestMatchURIRefusesInvalidSPIFFEIDs: an invalid SPIFFE ID matches no rule,
// not even itself as a literal, nor a rule that is all wildcard; other
// schemes keep matching as before.
func TestMatchURIRefusesInvalidSPIFFEIDs(t *testing.T) {
	for _, tc := range spiffeIDCases {
		if tc.want == "" || !strings.HasPrefix(tc.id, "spiffe://td/") {
			continue
		}
		for _, rule := range []string{tc.id, "spiffe://td/**", "spiffe://td/*", "spiffe://td/*/*/*"} {
			if matchURI(rule, tc.id) {
				t.Errorf("matchURI(%q, %.60q) = true for an invalid SPIFFE ID (%s)", rule, tc.id, tc.want)
			}
		}
	}
	for _, tc := range []struct{ rule, uri string }{
		{"https://td/ns/../x", "https://td/ns/../x"},
		{"https://td/**", "https://td/ns/../x"},
		{"urn:x:y", "urn:x:y"},
	} {
		if !matchURI(tc.rule, tc.uri) {
			t.Errorf("matchURI(%q, %q) = false: a non-SPIFFE URI must match as before", tc.rule, tc.uri)
		}
	}
}

func TestCheckURIPatternRefusesRulesMatchingOnlyInvalidIDs(t *testing.T) {
	for _, good := range []string{
		"spiffe://td", "spiffe://td/**", "spiffe://td/ns/*/sa/web", "spiffe://td/..x/*",
		"https://td/ns/../x", "https://td/a//*", // other schemes: as before
		"spiffe://td/" + strings.Repeat("x", 2046-len("spiffe://td/")) + "/*",
	} {
		if err := CheckURIPattern(good); err != nil {
			t.Errorf("CheckURIPattern(%.60q) = %v", good, err)
		}
	}
	for _, tc := range []struct{ pattern, want string }{
		{"spiffe://td/ns/../sa/*", "dot segments"},
		{"spiffe://td/./**", "dot segments"},
		{"spiffe://td/ns//*", "empty segments"},
		{"spiffe://td/*/", "trailing slash"},
		{"spiffe://td/", "trailing slash"},
		{"spiffe://td/ns%2F*", "whole path segment"},
		{"spiffe://td/ns%2Fx/*", "path segment characters"},
		{"spiffe://td/x?q=y/*", "path segment characters"},
		{"spiffe://TD/**", "trust domain characters"},
		{"spiffe://td:8443/**", "trust domain characters"},
		{"spiffe://me@td/*", "trust domain characters"},
		{"SPIFFE://td/**", "scheme is missing or invalid"},
		{"spiffe://td/" + strings.Repeat("x", 2047-len("spiffe://td/")) + "/*", "longer than 2048 bytes"},
	} {
		err := CheckURIPattern(tc.pattern)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.pattern) {
			t.Errorf("CheckURIPattern(%.60q) = %v, want an error naming the value and saying %q", tc.pattern, err, tc.want)
		}
	}
	err := (Policy{URIs: []string{"spiffe://td/ns/../**"}}).Check()
	var pe *PolicyError
	if !errors.As(err, &pe) || pe.Rule != RuleURIs {
		t.Errorf("Policy.Check() = %v, want a PolicyError for the URI rules", err)
	}
}

// TestVerifierRefusesInvalidSPIFFEIDAsBadCert: a certificate from the
// trusted CA whose URI SAN is an invalid SPIFFE ID is refused as bad-cert,
// whatever the rules: a literal rule equal to it, a wildcard covering it, a
// CN rule the certificate matches, or --allow-all.
func TestVerifierRefusesInvalidSPIFFEIDAsBadCert(t *testing.T) {
	f := newMTLSFixture(t)
	for _, tc := range []struct {
		name string
		san  *url.URL
	}{
		{"dot-dot segment", mustURL(t, "spiffe://td/ns/../sa/x")},
		{"empty segment", mustURL(t, "spiffe://td/ns//sa/x")},
		{"uppercase trust domain", mustURL(t, "spiffe://TD/ns/sa/x")},
		{"port", mustURL(t, "spiffe://td:443/ns/sa/x")},
		{"query", mustURL(t, "spiffe://td/ns/sa/x?a=b")},
		// crypto/x509's url.URL forms of these two read as valid IDs:
		// String() lowercases the scheme and drops the empty fragment.
		{"uppercase scheme", &url.URL{Scheme: "SPIFFE", Host: "td", Path: "/ns/sa/x"}},
		{"empty fragment", &url.URL{Scheme: "spiffe", Opaque: "//td/ns/sa/x#"}},
	} {
		leaf := f.ca.issue(t, clientTemplate(func(c *x509.Certificate) { c.URIs = []*url.URL{tc.san} })).Leaf
		id := leaf.URIs[0].String()
		for _, p := range []Policy{
			{URIs: []string{id}},
			{URIs: []string{"spiffe://td/**"}},
			{CNs: []string{"web"}},
			{AllowAll: true},
		} {
			err := f.src.ServerVerifier(p)(tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}})
			var ae *AuthError
			if !errors.As(err, &ae) || ae.Reason != ReasonBadCert || !strings.Contains(err.Error(), "not a valid SPIFFE ID") {
				t.Errorf("%s under %+v: %v, want a bad-cert refusal naming the invalid SPIFFE ID", tc.name, p, err)
			}
		}
	}
	valid := f.ca.issue(t, clientTemplate(func(c *x509.Certificate) { c.URIs = []*url.URL{mustURL(t, "spiffe://td/ns/sa/x")} })).Leaf
	err := f.src.ServerVerifier(Policy{URIs: []string{"spiffe://td/**"}})(tls.ConnectionState{PeerCertificates: []*x509.Certificate{valid}})
	if err != nil {
		t.Errorf("a valid SPIFFE ID under spiffe://td/**: %v", err)
	}
}

// TestVerifierKeepsNonSPIFFEURIs: a URI SAN of another scheme is not held
// to the SPIFFE rules, and does not stop a valid SPIFFE ID next to it.
func TestVerifierKeepsNonSPIFFEURIs(t *testing.T) {
	f := newMTLSFixture(t)
	leaf := f.ca.issue(t, clientTemplate(func(c *x509.Certificate) {
		c.URIs = []*url.URL{mustURL(t, "https://td/ns/../x"), mustURL(t, "spiffe://td/ns/sa/x")}
	})).Leaf
	for _, rule := range []string{"https://td/ns/../x", "spiffe://td/ns/sa/x"} {
		err := f.src.ServerVerifier(Policy{URIs: []string{rule}})(tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}})
		if err != nil {
			t.Errorf("rule %q: %v", rule, err)
		}
	}
}

func TestURISANsReadsTheSignedBytes(t *testing.T) {
	f := newMTLSFixture(t)
	leaf := f.ca.issue(t, clientTemplate(func(c *x509.Certificate) {
		c.URIs = []*url.URL{{Scheme: "SPIFFE", Host: "td", Path: "/x"}, {Scheme: "spiffe", Opaque: "//td/y#"}}
		c.DNSNames = []string{"web.default.svc"}
	})).Leaf
	got, err := uriSANs(leaf)
	if err != nil || len(got) != 2 || got[0] != "SPIFFE://td/x" || got[1] != "spiffe://td/y#" {
		t.Errorf("uriSANs = %q, %v; want the two URIs as signed", got, err)
	}
	if got, err := uriSANs(&x509.Certificate{}); got != nil || err != nil {
		t.Errorf("uriSANs of a certificate without SANs = %q, %v", got, err)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
