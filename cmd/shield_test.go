package cmd

import (
	"strings"
	"testing"

	"github.com/moat-proxy/moat/proxy"
)

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"65536", 65536, true}, {"64KiB", 64 << 10, true}, {"64k", 64 << 10, true}, {"64 MiB", 64 << 20, true},
		{"1GB", 1 << 30, true}, {"0", 0, true}, {"12b", 12, true},
		{"", 0, false}, {"-1", 0, false}, {"64XB", 0, false}, {"1.5MiB", 0, false}, {"99999999999GiB", 0, false},
	} {
		got, err := parseSize(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
	for _, n := range []int64{0, 1000, 64 << 10, 64 << 20, 3 << 30} {
		b := byteSize(n)
		if got, err := parseSize(b.String()); err != nil || got != n {
			t.Errorf("round trip of %d through %q: %d, %v", n, b.String(), got, err)
		}
	}
}

// TestEveryLimitNamesAFlag: each limit the proxy refuses or evicts for is
// worded with a flag moat server has.
func TestEveryLimitNamesAFlag(t *testing.T) {
	cmd := newServerCommand(&logOptions{})
	for l := proxy.LimitConns; l <= proxy.LimitHandshakeMemory; l++ {
		words := explainLimit(l)
		flag, _, ok := strings.Cut(strings.TrimPrefix(words, "--"), " ")
		if !ok || !strings.HasPrefix(words, "--") || cmd.Flags().Lookup(flag) == nil {
			t.Errorf("limit %v is worded %q, which names no flag of moat server", l, words)
		}
	}
}
