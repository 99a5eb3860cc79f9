package proxy

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestLoggableEscapesAndBounds(t *testing.T) {
	cases := []struct {
		name, in, want string
		limit          int
	}{
		{"plain", "api.example.com", "api.example.com", 256},
		{"empty", "", "", 256},
		{"printable unicode kept", "CN=Müller, OU=café", "CN=Müller, OU=café", 256},
		{"NUL", "a\x00b.example", `a\x00b.example`, 256},
		{"newline cannot fake a line", "x\n{\"level\":\"info\"}", `x\n{"level":"info"}`, 256},
		{"terminal escape", "\x1b[31mred", `\x1b[31mred`, 256},
		{"DEL", "a\x7f", `a\x7f`, 256},
		{"backslash is escaped", `a\x00`, `a\\x00`, 256},
		{"invalid UTF-8", "a\xffb\xc3", `a\xffb\xc3`, 256},
		{"real U+FFFD kept", "a\uFFFDb", "a\uFFFDb", 256},
		{"zero-width space", "a\u200bb", `a\u200bb`, 256},
		{"exactly the limit", strings.Repeat("a", 8), strings.Repeat("a", 8), 8},
		{"cut", strings.Repeat("a", 9), "aaaaaaaa...[cut, 9 bytes in all]", 8},
		{"cut never splits an escape", "aaaaaa\x00b", `aaaaaa...[cut, 8 bytes in all]`, 8},
		{"cut never splits a rune", "aaaaaaaü", `aaaaaaa...[cut, 9 bytes in all]`, 8},
	}
	for _, tc := range cases {
		if got := loggable(tc.in, tc.limit); got != tc.want {
			t.Errorf("%s: loggable(%q, %d) = %q, want %q", tc.name, tc.in, tc.limit, got, tc.want)
		}
	}
}

// TestLoggableOutputIsBoundedAndClean: whatever a peer sends, the result is
// valid UTF-8 with no control byte, no longer than the limit plus the
// marker.
func TestLoggableOutputIsBoundedAndClean(t *testing.T) {
	inputs := []string{
		strings.Repeat("a", 60000),
		strings.Repeat("\x00", 60000),
		strings.Repeat("\xff", 1000),
		strings.Repeat("ü", 1000),
		strings.Repeat("a\x00", 500),
	}
	for _, in := range inputs {
		got := loggable(in, maxLoggedName)
		if len(got) > maxLoggedName+40 {
			t.Errorf("%.10q...: %d bytes", in, len(got))
		}
		if !utf8.ValidString(got) {
			t.Errorf("%.10q...: invalid UTF-8 %q", in, got)
		}
		for _, r := range got {
			if r < ' ' || r == 0x7f {
				t.Errorf("%.10q...: control character %#x in %q", in, r, got)
				break
			}
		}
	}
}

// FuzzLoggable: whatever a peer sends, the text a log line carries is
// bounded, valid UTF-8, and free of control characters.
func FuzzLoggable(f *testing.F) {
	for _, s := range []string{"", "a", "a\x00b", "\xff", "ü", `\`, strings.Repeat("x", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := loggable(in, 64)
		if len(got) > 64+40 || !utf8.ValidString(got) {
			t.Fatalf("loggable(%q) = %q", in, got)
		}
		if strings.ContainsFunc(got, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			t.Fatalf("loggable(%q) = %q holds a control character", in, got)
		}
	})
}
