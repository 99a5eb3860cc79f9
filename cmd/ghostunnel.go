package cmd

import (
	"os"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/moat-proxy/moat/certs"
	"github.com/moat-proxy/moat/proxy"
)

// ghostunnelOptions are ghostunnel's spellings that moat takes as they are,
// so that a ghostunnel command line runs with moat in its place: the
// keystore, the SAN aliases, the periodic reload and the connection
// lifetime; and the ghostunnel flags moat deliberately lacks, which stop
// moat with one line saying why and what to use instead (see unsupported).
type ghostunnelOptions struct {
	keystore        string
	storepass       string
	timedReload     time.Duration
	maxConnLifetime time.Duration
	noClientCert    bool // client mode's --disable-authentication

	refused []*unsupportedFlag
}

func (g *ghostunnelOptions) register(f *pflag.FlagSet) {
	f.StringVar(&g.keystore, "keystore", "", "one file with the certificate chain and its private key: PEM (in any order) or PKCS#12 (.p12, with --storepass); reloaded on change, like --cert/--key")
	f.StringVar(&g.storepass, "storepass", "", "password of a PKCS#12 --keystore (none when empty; default $"+storepassEnv+", which other local users cannot read from the process's command line)")
	f.DurationVar(&g.timedReload, "timed-reload", 0, "also re-read the certificate, key and CA files this often, besides watching them (0 = only on change and SIGHUP)")
	f.DurationVar(&g.maxConnLifetime, "max-conn-lifetime", 0, "reset connections this long after they were accepted, busy or not (0 = never)")
	for _, u := range unsupportedFlags(both) {
		g.refuse(f, u)
	}
}

// registerServer adds ghostunnel's server-only spellings: the older
// --allow-dns-san and --allow-uri-san names of --allow-dns and --allow-uri,
// which must be registered already.
func (g *ghostunnelOptions) registerServer(f *pflag.FlagSet) {
	for alias, of := range map[string]string{"allow-dns-san": "allow-dns", "allow-uri-san": "allow-uri"} {
		f.Var(aliasOf(f.Lookup(of).Value), alias, "same as --"+of+" (ghostunnel's older spelling)")
		f.MarkHidden(alias)
	}
	for _, u := range unsupportedFlags(serverOnly) {
		g.refuse(f, u)
	}
}

// registerClient adds ghostunnel's client-only spellings.
func (g *ghostunnelOptions) registerClient(f *pflag.FlagSet) {
	f.BoolVar(&g.noClientCert, "disable-authentication", false, "present no client certificate to the server (cannot be combined with --cert, --key or --keystore)")
	for _, u := range unsupportedFlags(clientOnly) {
		g.refuse(f, u)
	}
}

// check stops moat at start when a flag it does not support was given.
// It runs before anything else looks at the flags, so that the line says
// what is missing rather than what the missing flag left undone.
func (g *ghostunnelOptions) check() error {
	for _, u := range g.refused {
		if u.given {
			return flagError(u.name, "moat does not support this ghostunnel flag: %s", u.why)
		}
	}
	return nil
}

// apply sets what the flags ask of the proxy, once the mode has built it.
func (g *ghostunnelOptions) apply(status *statusOptions, cfg *proxy.Config, log zerolog.Logger) error {
	switch {
	case g.maxConnLifetime < 0:
		return flagError("max-conn-lifetime", "must not be negative")
	case g.timedReload < 0:
		return flagError("timed-reload", "must not be negative")
	}
	cfg.MaxConnLifetime = g.maxConnLifetime
	status.mode, status.listen = "server", cfg.Listen.String()
	if cfg.Mode != proxy.ModeServer {
		status.mode = "client"
	}
	if err := status.acceptScheme(); err != nil {
		return err
	}
	if g.timedReload > 0 {
		log.Info().Dur("every", g.timedReload).Msg("certificates are also re-read periodically (--timed-reload)")
	}
	return nil
}

// keystoreSource loads --keystore, which stands alone for the certificate:
// the other flags that give one (named in others) must be absent.
func (g *ghostunnelOptions) keystoreSource(caFile string, others ...string) (*certs.Source, error) {
	if len(others) > 0 {
		return nil, flagError("keystore", "give either --keystore or %s, not both", strings.Join(others, ", "))
	}
	pass := g.storepass
	if pass == "" {
		pass = os.Getenv(storepassEnv)
	}
	src, err := certs.NewKeystoreSource(g.keystore, pass, caFile)
	if err != nil {
		return nil, fileFailure(fileFlag(err), "", err)
	}
	return src, nil
}

// storepassEnv is where --storepass is read from when the flag is absent:
// ghostunnel's variable, and the way to keep the password out of ps.
const storepassEnv = "KEYSTORE_PASS"

// flagsGiven lists the flags among pairs (name, set) that are set, as --name.
func flagsGiven(pairs map[string]bool) []string {
	var out []string
	for name, set := range pairs {
		if set {
			out = append(out, "--"+name)
		}
	}
	sort.Strings(out)
	return out
}

// acceptScheme takes ghostunnel's http:// form of --status. ghostunnel
// serves the status port over HTTPS with its own certificate unless told
// http://; moat serves plain HTTP only, so https:// is refused rather than
// quietly served in the clear.
func (s *statusOptions) acceptScheme() error {
	switch {
	case strings.HasPrefix(s.addr, "http://"):
		s.addr = strings.TrimSuffix(strings.TrimPrefix(s.addr, "http://"), "/")
	case strings.HasPrefix(s.addr, "https://"):
		return flagError("status", "%q: moat serves the status port over plain HTTP only; give http://HOST:PORT or HOST:PORT and keep the port on loopback or the pod network", s.addr)
	case strings.HasPrefix(s.addr, "unix:"), strings.HasPrefix(s.addr, "systemd:"), strings.HasPrefix(s.addr, "launchd:"):
		return flagError("status", "%q: the status port listens on HOST:PORT only", s.addr)
	}
	return nil
}

// aliasValue is a second name of a repeatable flag: it sets the flag's
// own Value, so values given under either name add up in order.
type aliasValue struct{ of pflag.Value }

func aliasOf(v pflag.Value) *aliasValue  { return &aliasValue{of: v} }
func (a *aliasValue) Set(v string) error { return a.of.Set(v) }
func (a *aliasValue) Type() string       { return a.of.Type() }
func (a *aliasValue) String() string     { return a.of.String() }

// unsupportedFlag is a ghostunnel flag moat recognises only to refuse:
// hidden, it takes the value ghostunnel's does and records that it was
// given; check then stops moat with why.
type unsupportedFlag struct {
	name  string
	why   string
	bool  bool // takes no value
	given bool
}

func (u *unsupportedFlag) Set(string) error { u.given = true; return nil }
func (u *unsupportedFlag) String() string   { return "" }
func (u *unsupportedFlag) Type() string {
	if u.bool {
		return "bool"
	}
	return "string"
}

func (g *ghostunnelOptions) refuse(f *pflag.FlagSet, u unsupportedFlag) {
	v := &u
	g.refused = append(g.refused, v)
	flag := f.VarPF(v, u.name, "", "not supported: "+u.why)
	if u.bool {
		flag.NoOptDefVal = "true"
	}
	flag.Hidden = true
}
