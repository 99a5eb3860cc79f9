// Package tlspolicy is the cryptographic policy a user can require of every
// handshake: the lowest TLS version, the key exchange groups in order of
// preference, and whether only hybrid post-quantum groups will do.
//
// A server that prefers the hybrid group and allows X25519 as a fallback:
//
//	p := tlspolicy.Policy{Groups: []tls.CurveID{tls.X25519MLKEM768, tls.X25519}}
//	if err := p.Check(); err != nil {
//		return err
//	}
//	p.ApplyServer(cfg) // after everything else has set up cfg
//
// crypto/tls ignores the order of Config.CurvePreferences and ranks groups
// itself. A server applies the user's order anyway: per handshake it hands
// crypto/tls a Config that allows only the first group of the list the
// client supports (crypto/tls asks the client for a key share of it with a
// HelloRetryRequest when needed). A client cannot: its list only restricts
// what it offers, and crypto/tls orders the offer (hybrid groups first).
//
// The zero Policy changes nothing: crypto/tls's defaults stay in force
// (TLS 1.2 minimum, X25519MLKEM768 and the other hybrid groups preferred).
package tlspolicy

import (
	"crypto/fips140"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
)

// Policy is what every handshake must meet.
type Policy struct {
	// MinVersion is the lowest TLS version accepted; 0 keeps the Config's.
	MinVersion uint16
	// Groups are the key exchange groups allowed, most preferred first;
	// nil keeps crypto/tls's defaults (or, with RequirePQ, its hybrid ones).
	Groups []tls.CurveID
	// RequirePQ allows hybrid post-quantum groups only, and so TLS 1.3 only.
	RequirePQ bool
}

// HybridGroups are the hybrid post-quantum groups crypto/tls implements,
// in its own order of preference.
var HybridGroups = []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024}

// groupNames maps each group moat knows to the names it accepts for it: the
// IANA name first (crypto/tls's CurveID.String for the curves, OpenSSL's
// spelling for the rest), then common aliases. Names are case-insensitive.
var groupNames = []struct {
	id    tls.CurveID
	names []string
}{
	{tls.X25519MLKEM768, []string{"X25519MLKEM768"}},
	{tls.SecP256r1MLKEM768, []string{"SecP256r1MLKEM768"}},
	{tls.SecP384r1MLKEM1024, []string{"SecP384r1MLKEM1024"}},
	{tls.X25519, []string{"X25519"}},
	{tls.CurveP256, []string{"P-256", "P256", "secp256r1", "prime256v1"}},
	{tls.CurveP384, []string{"P-384", "P384", "secp384r1"}},
	{tls.CurveP521, []string{"P-521", "P521", "secp521r1"}},
}

// ErrUnknownGroup is wrapped by ParseGroup's error for a name it does not know.
var ErrUnknownGroup = errors.New("unknown key exchange group")

// ParseGroup returns the group a name stands for.
func ParseGroup(name string) (tls.CurveID, error) {
	for _, g := range groupNames {
		for _, n := range g.names {
			if strings.EqualFold(n, strings.TrimSpace(name)) {
				return g.id, nil
			}
		}
	}
	return 0, fmt.Errorf("%q: %w (known: %s)", name, ErrUnknownGroup, strings.Join(KnownGroups(), ", "))
}

// KnownGroups lists the canonical name of every group ParseGroup knows.
func KnownGroups() []string {
	out := make([]string, len(groupNames))
	for i, g := range groupNames {
		out[i] = g.names[0]
	}
	return out
}

// GroupName is the canonical name of a group, for logs.
func GroupName(id tls.CurveID) string {
	for _, g := range groupNames {
		if g.id == id {
			return g.names[0]
		}
	}
	return id.String()
}

// IsHybrid reports whether a group is a hybrid post-quantum one.
func IsHybrid(id tls.CurveID) bool { return slices.Contains(HybridGroups, id) }

// Errors Check reports; each names what the user asked for that cannot be.
var (
	ErrBadVersion     = errors.New("TLS version must be 1.2 or 1.3")
	ErrPQNeedsTLS13   = errors.New("hybrid post-quantum key exchange exists in TLS 1.3 only")
	ErrNotHybrid      = errors.New("not a hybrid post-quantum group")
	ErrDuplicateGroup = errors.New("listed twice")
	ErrNotFIPS        = errors.New("not allowed in FIPS 140-3 mode")
)

// GroupError is a Check failure about one group of the list.
type GroupError struct {
	Group tls.CurveID
	Err   error
}

func (e *GroupError) Error() string { return GroupName(e.Group) + ": " + e.Err.Error() }
func (e *GroupError) Unwrap() error { return e.Err }

// fipsGroups are the groups crypto/tls allows when FIPS 140-3 mode is on.
var fipsGroups = []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024,
	tls.CurveP256, tls.CurveP384, tls.CurveP521}

// Check reports a policy no handshake could meet, or one that asks for
// two things at odds.
func (p Policy) Check() error {
	switch p.MinVersion {
	case 0, tls.VersionTLS12, tls.VersionTLS13:
	default:
		return ErrBadVersion
	}
	if p.RequirePQ && p.MinVersion == tls.VersionTLS12 {
		return ErrPQNeedsTLS13
	}
	for i, g := range p.Groups {
		switch {
		case slices.Contains(p.Groups[:i], g):
			return &GroupError{Group: g, Err: ErrDuplicateGroup}
		case p.RequirePQ && !IsHybrid(g):
			return &GroupError{Group: g, Err: ErrNotHybrid}
		case fips140.Enabled() && !slices.Contains(fipsGroups, g):
			return &GroupError{Group: g, Err: ErrNotFIPS}
		}
	}
	return nil
}

// IsZero reports whether the policy leaves crypto/tls's defaults alone.
func (p Policy) IsZero() bool { return p.MinVersion == 0 && len(p.Groups) == 0 && !p.RequirePQ }

// minVersion is the lowest version the policy allows over a Config's own.
func (p Policy) minVersion(own uint16) uint16 {
	v := max(own, p.MinVersion)
	if p.RequirePQ {
		v = tls.VersionTLS13
	}
	return v
}

// groups is the list in force: the user's, or the hybrid ones for
// RequirePQ alone, or nil for crypto/tls's defaults.
func (p Policy) groups() []tls.CurveID {
	if len(p.Groups) == 0 && p.RequirePQ {
		return HybridGroups
	}
	return p.Groups
}

// ApplyClient sets a client Config's lowest version and the groups it
// offers.
func (p Policy) ApplyClient(cfg *tls.Config) {
	cfg.MinVersion = p.minVersion(cfg.MinVersion)
	if g := p.groups(); g != nil {
		cfg.CurvePreferences = slices.Clone(g)
	}
}

// ApplyServer sets a server Config's lowest version and groups, and makes
// it pick the group by the policy's order. Call it last: it wraps the
// Config's GetConfigForClient, whose Configs it restricts per handshake.
// A client that supports none of the groups is refused by crypto/tls
// itself, with the alert TLS has for it (handshake_failure in TLS 1.3);
// Explain words the error.
func (p Policy) ApplyServer(cfg *tls.Config) {
	cfg.MinVersion = p.minVersion(cfg.MinVersion)
	groups := p.groups()
	if groups == nil {
		return
	}
	cfg.CurvePreferences = slices.Clone(groups)
	inner := cfg.GetConfigForClient
	pick := &picker{groups: slices.Clone(groups), min: cfg.MinVersion}
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		chosen := cfg
		if inner != nil {
			c, err := inner(hello)
			if err != nil {
				return nil, err
			}
			if c != nil {
				chosen = c
			}
		}
		return pick.configFor(chosen, hello), nil
	}
}

// picker hands out, per handshake, a Config allowing one group: the
// first of groups the client supports.
type picker struct {
	groups []tls.CurveID
	min    uint16
	cache  atomic.Pointer[pickCache]
}

// pickCache holds the one-group Configs derived from one Config (a
// certificate reload makes a new one).
type pickCache struct {
	from    *tls.Config
	byGroup map[tls.CurveID]*tls.Config
}

func (k *picker) configFor(from *tls.Config, hello *tls.ClientHelloInfo) *tls.Config {
	g, ok := k.choose(hello)
	if !ok || (from.GetCertificate == nil && len(from.Certificates) == 0) {
		// Nothing in common (crypto/tls refuses it with the whole list),
		// or a Config that only refuses (an invalid server name).
		return from
	}
	c := k.cache.Load()
	if c == nil || c.from != from {
		c = &pickCache{from: from, byGroup: make(map[tls.CurveID]*tls.Config, len(k.groups))}
		for _, id := range k.groups {
			one := from.Clone()
			one.GetConfigForClient = nil
			one.CurvePreferences = []tls.CurveID{id}
			one.MinVersion = max(one.MinVersion, k.min)
			c.byGroup[id] = one
		}
		k.cache.Store(c)
	}
	return c.byGroup[g]
}

// choose returns the first group of the list the client supports. A
// client without TLS 1.3 cannot use a hybrid group whatever it lists.
func (k *picker) choose(hello *tls.ClientHelloInfo) (tls.CurveID, bool) {
	tls13 := slices.Contains(hello.SupportedVersions, tls.VersionTLS13)
	for _, g := range k.groups {
		if IsHybrid(g) && !tls13 {
			continue
		}
		if slices.Contains(hello.SupportedCurves, g) {
			return g, true
		}
	}
	return 0, false
}

// FIPS reports whether the process runs with Go's FIPS 140-3 module on
// (GODEBUG=fips140=on or only), and whether it is enforced (only).
func FIPS() (enabled, enforced bool) { return fips140.Enabled(), fips140.Enforced() }

// FIPSModule is the version of Go's FIPS 140-3 module moat was built with:
// a frozen one such as v1.0.0 when built with GOFIPS140, else "latest".
func FIPSModule() string { return fips140.Version() }
