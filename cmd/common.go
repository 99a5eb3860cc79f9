package cmd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"go/version"
	"runtime"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/moat-proxy/moat/certs"
	"github.com/moat-proxy/moat/endpoint"
	"github.com/moat-proxy/moat/proxy"
	"github.com/moat-proxy/moat/runner"
)

// commonOptions are the flags server and client modes share: one relay,
// two orientations.
type commonOptions struct {
	listen           string
	target           string
	handshakeTimeout time.Duration
	idleTimeout      time.Duration
	connectTimeout   time.Duration
	shutdownTimeout  time.Duration
	shutdownDelay    time.Duration
	maxConns         int
	maxHandshakes    int
	handshakeRate    int
	alpn             []string
	keepAlive        time.Duration
	dryRun           bool
	plaintext        plaintextSide // which of --listen and --target carries plaintext
	crl              crlOptions    // --crl, --crl-expired
	status           statusOptions
	crypto           cryptoOptions     // --min-tls-version, --tls-groups, --require-pq
	ghost            ghostunnelOptions // ghostunnel's spellings and flags
	sandbox          sandboxOptions    // --disable-landlock
	logs             *logOptions       // the root command's
	flags            *pflag.FlagSet    // the mode's, for what was given
}

func (o *commonOptions) register(f *pflag.FlagSet, listenHelp, targetHelp string) {
	f.StringVar(&o.listen, "listen", "", listenHelp+" (required)")
	f.StringVar(&o.target, "target", "", targetHelp+" (required)")
	f.DurationVar(&o.handshakeTimeout, "handshake-timeout", 10*time.Second, "close connections whose TLS handshake has not finished after this long")
	f.DurationVar(&o.idleTimeout, "idle-timeout", time.Hour, "close connections that moved no byte for this long (0 = never)")
	f.DurationVar(&o.connectTimeout, "connect-timeout", 10*time.Second, "give up connecting to --target after this long")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGTERM/SIGINT, let open connections finish for this long, then close them")
	f.DurationVar(&o.shutdownDelay, "shutdown-delay", 0, "on SIGTERM/SIGINT, report not ready at once but keep accepting for this long, so load balancers notice first")
	f.IntVar(&o.maxConns, "max-concurrent-conns", 0, "most connections open at once; more are refused (0 = limited only by file descriptors)")
	f.IntVar(&o.maxHandshakes, "max-concurrent-handshakes", 4096, "most TLS handshakes in flight at once; in server mode a newcomer over it evicts the oldest connection without a ClientHello, and is refused only when there is none (0 = no cap)")
	f.IntVar(&o.handshakeRate, "max-handshake-rate", 0, "most new TLS handshakes per second; more connections are refused (0 = no limit)")
	f.StringSliceVar(&o.alpn, "alpn", nil, "ALPN protocols to offer, in order of preference, e.g. h2,http/1.1")
	f.DurationVar(&o.keepAlive, "tcp-keepalive", 30*time.Second, "TCP keepalive on the TLS side's socket: first probe after this much silence, then every third of it; three unanswered probes reset the connection (0 = off)")
	f.BoolVar(&o.dryRun, "dry-run", false, "check the flags, load the certificates and resolve --target, then exit without listening (0 = the same command would start)")
	o.plaintext.register(f)
	o.status.register(f)
	o.crl.register(f)
	o.crypto.register(f)
	o.ghost.register(f)
	o.sandbox.register(f)
	o.flags = f
}

// addresses parses --listen and --target.
func (o *commonOptions) addresses() (listen, target endpoint.Address, err error) {
	if o.listen == "" {
		return listen, target, flagError("listen", "required (host:port)")
	}
	if o.target == "" {
		return listen, target, flagError("target", "required (host:port or unix:/path)")
	}
	if listen, err = endpoint.ParseListen(o.listen); err != nil {
		return listen, target, flagError("listen", "%v", err)
	}
	if target, err = endpoint.ParseTarget(o.target); err != nil {
		return listen, target, flagError("target", "%v", err)
	}
	if target.Network() == "tcp" && target.Port() == 0 {
		return listen, target, flagError("target", "%q: port 0 cannot be connected to", o.target)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"handshake-timeout", o.handshakeTimeout}, {"idle-timeout", o.idleTimeout}, {"connect-timeout", o.connectTimeout},
		{"shutdown-timeout", o.shutdownTimeout}, {"shutdown-delay", o.shutdownDelay}, {"tcp-keepalive", o.keepAlive}} {
		if d.v < 0 {
			return listen, target, flagError(d.name, "must not be negative")
		}
	}
	for name, v := range map[string]int{"max-concurrent-conns": o.maxConns, "max-concurrent-handshakes": o.maxHandshakes, "max-handshake-rate": o.handshakeRate} {
		if v < 0 {
			return listen, target, flagError(name, "must not be negative")
		}
	}
	for _, p := range o.alpn {
		if p == "" || len(p) > 255 {
			return listen, target, flagError("alpn", "protocol names must be 1 to 255 bytes")
		}
	}
	return listen, target, nil
}

func (o *commonOptions) proxyConfig(mode proxy.Mode, listen, target endpoint.Address, tlsConfig *tls.Config, log zerolog.Logger) proxy.Config {
	if len(o.alpn) > 0 {
		tlsConfig.NextProtos = o.alpn
	}
	return proxy.Config{
		Mode: mode, Listen: listen, Target: endpoint.NewResolver(target), TLS: tlsConfig,
		HandshakeTimeout: o.handshakeTimeout, ConnectTimeout: o.connectTimeout,
		IdleTimeout: o.idleTimeout, MaxConns: o.maxConns, Log: log, KeepAlive: o.keepAlive,
		MaxHandshakes: o.maxHandshakes, HandshakeRate: o.handshakeRate,
		Explain: explainLimit, ExplainRenegotiation: explainRenegotiation,
	}
}

// configureFunc builds a mode's proxy from the parsed addresses, with the
// certificate source to reload (nil when there is none).
type configureFunc func(log zerolog.Logger, listen, target endpoint.Address) (proxy.Config, *certs.Source, error)

// command completes server's or client's command with what both share: the
// common flags, and run with the mode's configure.
func (o *commonOptions) command(c *cobra.Command, listenHelp, targetHelp string, configure configureFunc) *cobra.Command {
	c.RunE = func(cmd *cobra.Command, _ []string) error { return o.run(cmd, configure) }
	c.Annotations = map[string]string{logsAnnotation: "yes"} // fatal errors follow --log-format
	o.register(c.Flags(), listenHelp, targetHelp)
	return c
}

// run is the course of both proxy commands: build the logger, check and
// build the proxy (prepare), and run it.
func (o *commonOptions) run(cmd *cobra.Command, configure configureFunc) error {
	log, flushLog, err := o.logs.newLogger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	defer flushLog()
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, src, err := o.prepare(ctx, log, configure)
	if err != nil {
		return err
	}
	if o.dryRun {
		if src != nil && src.FromWorkloadAPI() {
			// Like the upstream, the agent is checked when moat runs: the
			// flags and the address are what a dry run can vouch for.
			src.Close()
		}
		log.Info().Str("listen", cfg.Listen.String()).Str("target", cfg.Target.String()).Msg("configuration is valid (--dry-run: not listening)")
		return nil
	}
	return runProxy(ctx, cfg, *o, log, src)
}

// prepare is every check a proxy command makes before it binds, and the
// building of its proxy: parse --listen and --target, refuse a plaintext
// side that may leave the host, let the mode build its proxy (certificates
// loaded), resolve --target and check the status flags. moat run puts
// every service of its file through it too.
func (o *commonOptions) prepare(ctx context.Context, log zerolog.Logger, configure configureFunc) (proxy.Config, *certs.Source, error) {
	if err := o.ghost.check(); err != nil {
		return proxy.Config{}, nil, err
	}
	listen, target, err := o.addresses()
	if err != nil {
		return proxy.Config{}, nil, err
	}
	if err := o.plaintext.check(o.plaintext.pick(listen, target)); err != nil {
		return proxy.Config{}, nil, err
	}
	cfg, src, err := configure(log, listen, target)
	if err != nil {
		return proxy.Config{}, nil, err
	}
	if err := o.crypto.apply(o.flags, &cfg, log); err != nil {
		return proxy.Config{}, nil, err
	}
	if err := o.ghost.apply(&o.status, &cfg, log); err != nil {
		return proxy.Config{}, nil, err
	}
	if err := cfg.Target.Resolve(ctx); err != nil {
		return proxy.Config{}, nil, addressFailure("target", cfg.Target.String(), err)
	}
	if err := o.plaintext.checkResolved(cfg.Target); err != nil {
		return proxy.Config{}, nil, err
	}
	if err := o.status.check(); err != nil {
		return proxy.Config{}, nil, err
	}
	if err := checkPortClash(cfg.Listen, o.status.addr); err != nil {
		return proxy.Config{}, nil, err
	}
	return cfg, src, nil
}

// fileSource loads a certificate and key given as --cert and --key, with
// the CA bundle of --cacert when caFile is not "".
func fileSource(certFile, keyFile, caFile string) (*certs.Source, error) {
	switch {
	case certFile == "":
		return nil, flagError("cert", "--key given without --cert")
	case keyFile == "":
		return nil, flagError("key", "--cert given without --key")
	}
	src, err := certs.NewFileSource(certFile, keyFile, caFile)
	if err != nil {
		return nil, fileFailure(fileFlag(err), "", err)
	}
	return src, nil
}

// runProxy binds --listen and hands the proxy to the runner, which serves
// it until SIGTERM or SIGINT and then drains it; see package runner for the
// sequence, SIGHUP and the second signal.
func runProxy(ctx context.Context, cfg proxy.Config, o commonOptions, log zerolog.Logger, src *certs.Source) error {
	if obs := o.status.observer(); obs != nil {
		cfg.Observer = obs
	}
	srv, err := proxy.New(cfg)
	if err != nil {
		return addressFailure("listen", cfg.Listen.String(), err)
	}
	if err := o.plaintext.checkBound(cfg.Listen, srv.Addr()); err != nil {
		return err
	}
	svc := runner.Service{Server: srv, Target: cfg.Target, ReloadEvery: o.ghost.timedReload}
	if src != nil {
		svc.Certificates = src
		svc.OnReload = o.status.onReload(src, reloadLogger(log, src))
		if src.FromWorkloadAPI() {
			svc.OnReload = o.status.onReload(src, workloadLogger(log, src))
		}
	}
	o.crl.addTo(&svc, log, &o.status)
	warnOldToolchain(log)
	err = runner.Run(ctx, runner.Options{
		Services:        []runner.Service{svc},
		Status:          o.status.port(log, cfg.Target, src),
		ShutdownDelay:   o.shutdownDelay,
		ShutdownTimeout: o.shutdownTimeout,
		Await:           awaitFunc(src),
		LimitMemory:     true,
		Notify:          true,
		Confine:         o.confine(log, cfg, src),
		Log:             log,
	})
	var cut *runner.CutError
	if errors.As(err, &cut) {
		return fmt.Errorf("--shutdown-timeout %s reached: %w", cut.Timeout, cut.Err)
	}
	return err
}

// pinnedToolchain is the Go release go.mod's toolchain line names: the
// newest 1.26 patch release, which carries crypto/tls security fixes.
const pinnedToolchain = "go1.26.11"

// warnOldToolchain says so when moat was built with an older Go (a build
// with GOTOOLCHAIN=local on an older installation).
func warnOldToolchain(log zerolog.Logger) {
	if v := runtime.Version(); version.IsValid(v) && version.Compare(v, pinnedToolchain) < 0 {
		log.Warn().Str("built_with", v).Str("pinned", pinnedToolchain).
			Msg("moat was built with an older Go than go.mod pins; crypto/tls security fixes may be missing (build with GOTOOLCHAIN=auto)")
	}
}

// reloadLogger logs the outcome of a certificate reload. A Source without
// a certificate (client mode's --cacert alone) is spoken of as the CA
// bundle it is.
func reloadLogger(log zerolog.Logger, src *certs.Source) func(error) {
	return func(err error) {
		caOnly := src.Certificate() == nil && !src.FromWorkloadAPI()
		switch {
		case err != nil && caOnly:
			log.Error().Err(err).Msg("CA bundle reload failed; the previous bundle stays in service")
			return
		case err != nil:
			log.Error().Err(err).Msg("certificate reload failed; the previous certificate stays in service")
			return
		case caOnly:
			log.Info().Int("ca_certificates", len(src.CACertificates())).Msg("CA bundle reloaded")
			return
		}
		ev := log.Info().Time("not_after", src.NotAfter())
		if c := src.Certificate(); c != nil && c.Leaf != nil {
			ev = ev.Str("serial", c.Leaf.SerialNumber.Text(16)).Str("subject", c.Leaf.Subject.String())
		}
		if pairs := src.Certificates(); len(pairs) > 1 {
			serials := make([]string, 0, len(pairs))
			for _, c := range pairs {
				if c.Leaf != nil {
					serials = append(serials, c.Leaf.SerialNumber.Text(16))
				}
			}
			ev = ev.Strs("serials", serials) // every pair's, in the order given
		}
		ev.Msg("certificate reloaded")
	}
}
