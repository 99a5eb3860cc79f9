package proxy

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds on what a peer-supplied string may take of a log line, after
// escaping. A name (SNI, ALPN, a certificate's CN or identity) gets
// maxLoggedName bytes; an error text, which may embed such names after
// crypto/tls's or x509's own words, gets maxLoggedError.
const (
	maxLoggedName  = 256
	maxLoggedError = 1024
)

// loggable is how a string a peer chose reaches a log line: at most limit
// bytes of it, with every byte that is not printable UTF-8 escaped as Go
// writes it in a quoted string (\x00, \n, \u200b, \\), so that a NUL, a
// terminal escape or a fake second line cannot get into the log as itself.
// A cut string ends in a marker giving its full length in bytes. Printable
// ASCII short enough, the common case, is returned as is.
func loggable(s string, limit int) string {
	if len(s) <= limit && plainASCII(s) {
		return s
	}
	var b strings.Builder
	b.Grow(min(len(s), limit) + 32)
	for i, r := range s {
		var piece string
		size := utf8.RuneLen(r)
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			piece, size = `\x`+hex2(s[i]), 1
		case r == '\\':
			piece = `\\`
		case unicode.IsPrint(r):
			piece = s[i : i+size]
		default:
			q := strconv.QuoteRuneToASCII(r)
			piece = q[1 : len(q)-1] // without the quotes: \x00, \n, \u200b
		}
		if b.Len()+len(piece) > limit {
			b.WriteString("...[cut, " + strconv.Itoa(len(s)) + " bytes in all]")
			return b.String()
		}
		b.WriteString(piece)
	}
	return b.String()
}

// plainASCII reports whether s is printable ASCII without a backslash, which
// loggable leaves alone.
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c > '~' || c == '\\' {
			return false
		}
	}
	return true
}

func hex2(b byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[b>>4], digits[b&0xf]})
}
