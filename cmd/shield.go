package cmd

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/moat-proxy/moat/proxy"
)

// shieldOptions are server mode's bounds on what a client may hold before
// it is authenticated (beyond the --max-* flags both modes share).
type shieldOptions struct {
	clientHelloTimeout time.Duration
	perSource          int
	handshakeMemory    byteSize
	maxClientCert      byteSize
}

func (o *shieldOptions) register(f *pflag.FlagSet) {
	o.handshakeMemory = 64 << 20
	o.maxClientCert = 64 << 10
	f.DurationVar(&o.clientHelloTimeout, "client-hello-timeout", 3*time.Second, "close connections that have not sent a complete ClientHello after this long (never past --handshake-timeout)")
	f.IntVar(&o.perSource, "max-handshakes-per-source", 0, "most TLS handshakes in flight from one client address (an IPv6 /64 counts as one); a newcomer over it evicts that address's oldest connection without a ClientHello (0 = a quarter of --max-concurrent-handshakes)")
	f.Var(&o.handshakeMemory, "handshake-memory", "budget for memory held by unfinished handshakes, e.g. 64MiB; over it the oldest unfinished handshake is cut (0 = no budget)")
	f.Var(&o.maxClientCert, "max-client-cert-bytes", "most bytes of client certificate chain a handshake may send, e.g. 64KiB (0 = crypto/tls's own limit)")
}

// apply checks the flags and sets them in cfg.
func (o *shieldOptions) apply(cfg *proxy.Config) error {
	if o.clientHelloTimeout < 0 {
		return flagError("client-hello-timeout", "must not be negative")
	}
	if o.perSource < 0 {
		return flagError("max-handshakes-per-source", "must not be negative")
	}
	perSource := o.perSource
	if perSource == 0 && cfg.MaxHandshakes > 0 {
		perSource = max(1, cfg.MaxHandshakes/4)
	}
	cfg.ClientHelloTimeout = o.clientHelloTimeout
	cfg.MaxHandshakesPerSource = perSource
	cfg.HandshakeMemory = int64(o.handshakeMemory)
	cfg.MaxClientCertBytes = int(o.maxClientCert)
	return nil
}

// byteSize is a flag value in bytes, written as a number with an optional
// unit: 65536, 64KiB, 64MiB, 1GiB (KB, MB, GB and K, M, G mean the same
// binary units).
type byteSize int64

func (b *byteSize) String() string { return formatSize(int64(*b)) }

func (b *byteSize) Type() string { return "size" }

func (b *byteSize) Set(s string) error {
	v, err := parseSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(v)
	return nil
}

var sizeUnits = []struct {
	suffixes []string
	shift    uint
}{
	{[]string{"gib", "gb", "gi", "g"}, 30},
	{[]string{"mib", "mb", "mi", "m"}, 20},
	{[]string{"kib", "kb", "ki", "k"}, 10},
	{[]string{"b", ""}, 0},
}

func parseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	for _, u := range sizeUnits {
		for _, suf := range u.suffixes {
			num, ok := strings.CutSuffix(t, suf)
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
			if err != nil || n < 0 || n > (1<<62)>>u.shift {
				return 0, fmt.Errorf("%q is not a size (want e.g. 65536, 64KiB or 64MiB)", s)
			}
			return n << u.shift, nil
		}
	}
	return 0, fmt.Errorf("%q is not a size (want e.g. 65536, 64KiB or 64MiB)", s)
}

func formatSize(n int64) string {
	for _, u := range sizeUnits[:3] {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + []string{"GiB", "MiB", "KiB"}[3-u.shift/10]
		}
	}
	return strconv.FormatInt(n, 10)
}
