package certs

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzMatchURI feeds matchURI arbitrary (pattern, URI) pairs. It must never
// panic; and for a pattern CheckURIPattern accepts, a match needs a valid
// SPIFFE ID when the URI is one, a literal pattern matches itself and only
// itself, the pattern matches its shortest match, and the answer agrees
// with a regular expression written from the rule syntax alone.
func FuzzMatchURI(f *testing.F) {
	for _, seed := range [][2]string{
		{"spiffe://td/ns/shop/sa/web", "spiffe://td/ns/shop/sa/web"},
		{"spiffe://td/ns/*/sa/web", "spiffe://td/ns/bank/sa/web"},
		{"spiffe://td/**", "spiffe://td/ns/../sa/x"},
		{"spiffe://td/ns/../sa/x", "spiffe://td/ns/../sa/x"},
		{"spiffe://td/*", "spiffe://td.evil/x"},
		{"https://td/**", "https://td/a//b"},
		{"spiffe://td/**", "SPIFFE://td/x"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, pattern, uri string) {
		got := matchURI(pattern, uri)
		if CheckURIPattern(pattern) != nil {
			return // never a rule: CheckURIPattern refuses it at start
		}
		if got && isSPIFFE(uri) && checkSPIFFEID(uri) != nil {
			t.Fatalf("matchURI(%q, %q): an invalid SPIFFE ID matched", pattern, uri)
		}
		if got && isSPIFFE(pattern) != isSPIFFE(uri) {
			t.Fatalf("matchURI(%q, %q): a match across schemes", pattern, uri)
		}
		if !strings.Contains(pattern, "*") && got != (pattern == uri && validIfSPIFFE(uri)) {
			t.Fatalf("matchURI(%q, %q) = %v for a literal pattern", pattern, uri, got)
		}
		if m := shortestMatch(pattern); !matchURI(pattern, m) {
			t.Fatalf("matchURI(%q, %q) = false for its shortest match", pattern, m)
		}
		if utf8.ValidString(pattern) && utf8.ValidString(uri) {
			want := ruleRegexp(pattern).MatchString(uri) && validIfSPIFFE(uri)
			if got != want {
				t.Fatalf("matchURI(%q, %q) = %v, the rule syntax says %v", pattern, uri, got, want)
			}
		}
	})
}

func validIfSPIFFE(uri string) bool { return !isSPIFFE(uri) || checkSPIFFEID(uri) == nil }

// ruleRegexp is the rule syntax documented above CheckURIPattern, as a
// regular expression: the scheme and authority literal, "*" one non-empty
// path segment, "**" one or more.
func ruleRegexp(pattern string) *regexp.Regexp {
	if !strings.Contains(pattern, "*") {
		return regexp.MustCompile("^" + regexp.QuoteMeta(pattern) + "$")
	}
	scheme, rest, _ := strings.Cut(pattern, "://")
	authority, path, _ := strings.Cut(rest, "/")
	var re strings.Builder
	re.WriteString("^" + regexp.QuoteMeta(scheme+"://"+authority))
	for _, seg := range strings.Split(path, "/") {
		switch seg {
		case "*":
			re.WriteString("/[^/]+")
		case "**":
			re.WriteString("(?:/[^/]+)+")
		default:
			re.WriteString("/" + regexp.QuoteMeta(seg))
		}
	}
	return regexp.MustCompile(re.String() + "$")
}
