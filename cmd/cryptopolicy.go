package cmd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/moat-proxy/moat/proxy"
	"github.com/moat-proxy/moat/tlspolicy"
	"github.com/moat-proxy/moat/tlsstate"
)

// cryptoOptions are the flags that require a cryptographic policy of every
// handshake, in both modes: --min-tls-version, --tls-groups and
// --require-pq. See package tlspolicy for what each does to crypto/tls.
type cryptoOptions struct {
	minVersion string
	groups     []string
	requirePQ  bool

	policy tlspolicy.Policy // parsed by apply
}

func (c *cryptoOptions) register(f *pflag.FlagSet) {
	f.StringVar(&c.minVersion, "min-tls-version", "1.2", "lowest TLS version accepted: 1.2 or 1.3")
	f.StringSliceVar(&c.groups, "tls-groups", nil, "key exchange groups allowed, most preferred first, e.g. X25519MLKEM768,X25519,P-256 (default: Go's, hybrid post-quantum first; known: "+strings.Join(tlspolicy.KnownGroups(), ", ")+")")
	f.BoolVar(&c.requirePQ, "require-pq", false, "allow only hybrid post-quantum key exchange (X25519MLKEM768, SecP256r1MLKEM768, SecP384r1MLKEM1024), and so TLS 1.3 only: peers that cannot do it fail the handshake")
}

// parse turns the flags into a policy, refusing at start what no
// handshake could meet.
func (c *cryptoOptions) parse(fs *pflag.FlagSet) error {
	p := tlspolicy.Policy{RequirePQ: c.requirePQ}
	switch strings.TrimPrefix(strings.ToLower(c.minVersion), "tls") {
	case "1.2":
		// The default; with --require-pq it only conflicts if given.
		if f := fs.Lookup("min-tls-version"); f != nil && f.Changed {
			p.MinVersion = tls.VersionTLS12
		}
	case "1.3":
		p.MinVersion = tls.VersionTLS13
	default:
		return flagError("min-tls-version", "%q: want 1.2 or 1.3", c.minVersion)
	}
	for _, name := range c.groups {
		id, err := tlspolicy.ParseGroup(name)
		if err != nil {
			return flagError("tls-groups", "%v", err)
		}
		p.Groups = append(p.Groups, id)
	}
	if f := fs.Lookup("tls-groups"); f != nil && f.Changed && len(p.Groups) == 0 {
		return flagError("tls-groups", "empty: give at least one group, or leave the flag out for Go's defaults")
	}
	var ge *tlspolicy.GroupError
	switch err := p.Check(); {
	case err == nil:
	case errors.Is(err, tlspolicy.ErrPQNeedsTLS13):
		return flagError("require-pq", "cannot be combined with --min-tls-version 1.2: %v", err)
	case errors.As(err, &ge) && errors.Is(err, tlspolicy.ErrNotHybrid):
		return flagError("tls-groups", "%v, and --require-pq allows only %s", err, groupList(tlspolicy.HybridGroups))
	case errors.As(err, &ge) && errors.Is(err, tlspolicy.ErrNotFIPS):
		return flagError("tls-groups", "%v (GODEBUG=fips140 is on): use X25519MLKEM768, P-256, P-384 or P-521", err)
	default:
		return flagError("tls-groups", "%v", err)
	}
	c.policy = p
	return nil
}

// apply puts the policy on the proxy's TLS configuration once the mode has
// built it, and words the handshake failures the policy causes.
func (c *cryptoOptions) apply(fs *pflag.FlagSet, cfg *proxy.Config, log zerolog.Logger) error {
	if err := c.parse(fs); err != nil {
		return err
	}
	if fips, enforced := tlspolicy.FIPS(); fips {
		log.Info().Bool("enforced", enforced).Str("module", tlspolicy.FIPSModule()).
			Msg("FIPS 140-3 mode is on: crypto/tls uses only approved algorithms")
	}
	if c.policy.IsZero() {
		return nil
	}
	if cfg.Mode == proxy.ModeServer {
		c.policy.ApplyServer(cfg.TLS)
	} else {
		c.policy.ApplyClient(cfg.TLS)
	}
	cfg.ExplainHandshake = c.explain(cfg.Mode)
	ev := log.Info().Str("min_tls_version", tls.VersionName(cfg.TLS.MinVersion)).Bool("require_pq", c.policy.RequirePQ)
	if len(cfg.TLS.CurvePreferences) > 0 {
		ev = ev.Str("tls_groups", groupList(cfg.TLS.CurvePreferences))
	}
	ev.Msg("TLS policy in force")
	return nil
}

func groupList(ids []tls.CurveID) string {
	names := make([]string, len(ids))
	for i, id := range ids {
		names[i] = tlspolicy.GroupName(id)
	}
	return strings.Join(names, ",")
}

// policyRefusal is a handshake error the policy flags explain; it keeps
// crypto/tls's error underneath for the metrics' classification.
type policyRefusal struct {
	why string
	err error
}

func (e *policyRefusal) Error() string { return e.why + ": " + e.err.Error() }
func (e *policyRefusal) Unwrap() error { return e.err }

// explain words the failures a policy flag causes, naming the flag: a
// peer with no group in common, or without TLS 1.3.
func (c *cryptoOptions) explain(mode proxy.Mode) func(error) error {
	p := c.policy
	peer := "client"
	if mode != proxy.ModeServer {
		peer = "server"
	}
	var groupsWhy string
	switch {
	case p.RequirePQ:
		groupsWhy = fmt.Sprintf("the %s offers no hybrid post-quantum key exchange; --require-pq allows only %s", peer, groupList(tlspolicy.HybridGroups))
	case len(p.Groups) > 0:
		groupsWhy = fmt.Sprintf("the %s supports none of the key exchange groups --tls-groups allows (%s)", peer, groupList(p.Groups))
	}
	versionWhy := ""
	switch {
	case p.RequirePQ:
		versionWhy = fmt.Sprintf("the %s does not speak TLS 1.3, which --require-pq requires", peer)
	case p.MinVersion == tls.VersionTLS13:
		versionWhy = fmt.Sprintf("the %s does not speak TLS 1.3, which --min-tls-version 1.3 requires", peer)
	}
	handshakeFailure := tls.AlertError(40).Error() // what a peer sends with no group in common
	return func(err error) error {
		why := ""
		switch tlsstate.ClassifyHandshakeFailure(err) {
		case tlsstate.FailureNoSharedCipher:
			why = groupsWhy
		case tlsstate.FailureProtocolVersion:
			why = versionWhy
		default:
			if mode != proxy.ModeServer && groupsWhy != "" && strings.Contains(err.Error(), handshakeFailure) {
				why = "the server refused the handshake; it may not support the key exchange groups moat offers (" + groupList(c.offered()) + ")"
			}
		}
		if why == "" {
			return err
		}
		return &policyRefusal{why: why, err: err}
	}
}

// offered is the client's list of groups under the policy.
func (c *cryptoOptions) offered() []tls.CurveID {
	if len(c.policy.Groups) > 0 {
		return c.policy.Groups
	}
	return tlspolicy.HybridGroups
}
