package cmd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/moat-proxy/moat/certs"
	"github.com/moat-proxy/moat/endpoint"
	"github.com/moat-proxy/moat/proxy"
	"github.com/moat-proxy/moat/proxyproto"
)

// serverOptions are the flags of `moat server`.
type serverOptions struct {
	common      commonOptions
	certFiles   []string // --cert, paired in order with keyFiles
	keyFiles    []string
	certDirs    []string
	selfSigned  bool
	selfHosts   []string
	disableAuth bool
	caFile      string
	policy      certs.Policy
	proxyProto  string
	tickets     bool
	shield      shieldOptions
	workload    workloadOptions
	acceptProxy acceptProxyOptions
}

func newServerCommand(logs *logOptions) *cobra.Command { return newServerMode(logs).cmd }

// newServerMode builds the command with its options, for moat run to fill from
// a file.
func newServerMode(logs *logOptions) modeCommand {
	o := &serverOptions{common: commonOptions{logs: logs, plaintext: plaintextSide{flag: "target"}}}
	cmd := o.common.command(&cobra.Command{
		Use: "server", Args: serverArgs,
		Short: "Accept TLS and relay the plaintext to a local upstream",
		Long: `Accept TLS connections on --listen, check who the client is, and relay the
plaintext to --target (host:port or unix:/path). The plaintext stays on this
host: --target must be a loopback address, localhost or a unix socket unless
--unsafe-target is given.

Client authentication is required by default; --disable-authentication turns
it off explicitly.`,
		Example: `  moat server --listen 127.0.0.1:8443 --target 127.0.0.1:8080 --cert tls.crt --key tls.key --disable-authentication
  moat server --listen :8443 --target unix:/run/app.sock --self-signed --disable-authentication`,
	}, "address to accept TLS on: host:port", "upstream to relay plaintext to: host:port or unix:/path", o.configure)
	f := cmd.Flags()
	f.StringArrayVar(&o.certFiles, "cert", nil, "PEM file with the server certificate chain, leaf first; repeat --cert/--key pairs to serve several certificates chosen by SNI (the first is the default)")
	f.StringArrayVar(&o.keyFiles, "key", nil, "PEM file with the private key of the --cert given in the same position")
	f.StringArrayVar(&o.certDirs, "cert-dir", nil, "directory holding tls.crt, tls.key and optional ca.crt (a Kubernetes TLS Secret mount); reloaded on change; repeat it to serve several certificates chosen by SNI (the first is the default and gives ca.crt)")
	f.BoolVar(&o.selfSigned, "self-signed", false, "serve a certificate generated in memory at start-up (its SHA-256 fingerprint is logged)")
	f.StringSliceVar(&o.selfHosts, "self-signed-hosts", []string{"localhost", "127.0.0.1", "::1"}, "names and addresses of the --self-signed certificate")
	f.BoolVar(&o.disableAuth, "disable-authentication", false, "accept clients without a certificate (client authentication is required otherwise)")
	f.StringVar(&o.caFile, "cacert", "", "PEM bundle of the CAs client certificates must chain to (with --cert-dir it replaces the Secret's ca.crt); reloaded on change")
	f.StringArrayVar(&o.policy.CNs, "allow-cn", nil, "allow clients whose certificate subject CN is NAME (repeatable; taken whole, commas included)")
	f.StringArrayVar(&o.policy.OUs, "allow-ou", nil, "allow clients whose certificate has the subject OU NAME (repeatable)")
	f.StringArrayVar(&o.policy.DNSNames, "allow-dns", nil, "allow clients whose certificate has the DNS SAN NAME (repeatable)")
	f.StringArrayVar(&o.policy.URIs, "allow-uri", nil, "allow clients whose certificate has the URI SAN URI, e.g. spiffe://trust.domain/ns/x/sa/y (repeatable)")
	f.BoolVar(&o.policy.AllowAll, "allow-all", false, "allow any client whose certificate chains to --cacert")
	f.StringVar(&o.proxyProto, "proxy-protocol", "", "send a PROXY protocol header to the upstream first: v2 (binary, with ALPN, SNI and client identity TLVs; the default when given without a value) or v1 (text)")
	f.Lookup("proxy-protocol").NoOptDefVal = "v2"
	o.shield.register(f)
	o.workload.register(f)
	o.common.ghost.registerServer(f)
	o.acceptProxy.register(f)
	f.BoolVar(&o.tickets, "session-tickets", true, "let clients resume sessions with TLS session tickets; --session-tickets=false makes every handshake a full one (forward secrecy for each connection, at the cost of a full handshake per reconnect)")
	return modeCommand{cmd: cmd, common: &o.common, configure: o.configure}
}

// serverArgs refuses positional arguments. --proxy-protocol takes its
// optional value only as --proxy-protocol=v1, so "--proxy-protocol v1"
// leaves a stray v1 behind: say how to write it.
func serverArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if f := cmd.Flags().Lookup("proxy-protocol"); f != nil && f.Changed && (args[0] == "v1" || args[0] == "v2") {
		return flagError("proxy-protocol", "write the version as --proxy-protocol=%s (with =)", args[0])
	}
	return usageError{fmt.Errorf("unexpected argument %q: moat server takes flags only (see moat server --help)", args[0])}
}

// configure builds server mode's proxy: TLS in, with client authentication
// unless turned off, plaintext out.
func (o *serverOptions) configure(log zerolog.Logger, listen, target endpoint.Address) (proxy.Config, *certs.Source, error) {
	if err := o.checkAuthFlags(); err != nil {
		return proxy.Config{}, nil, err
	}
	src, err := o.workload.source(log, conflict{"keystore", o.common.ghost.keystore != ""}, conflict{"cert", len(o.certFiles) > 0}, conflict{"key", len(o.keyFiles) > 0},
		conflict{"cert-dir", len(o.certDirs) > 0}, conflict{"self-signed", o.selfSigned}, conflict{"cacert", o.caFile != ""})
	if err == nil && src == nil {
		src, err = o.source()
	}
	if err != nil {
		return proxy.Config{}, nil, err
	}
	if !o.disableAuth && src.CAPool() == nil && !src.FromWorkloadAPI() {
		return proxy.Config{}, nil, flagError("cacert", "client authentication needs a CA bundle: give --cacert (or ca.crt in --cert-dir)")
	}
	if err := o.applyCRL(src); err != nil {
		return proxy.Config{}, nil, err
	}
	if o.selfSigned {
		leaf := src.Certificate().Leaf
		log.Warn().Str("sha256_fingerprint", certs.Fingerprint(leaf)).Strs("hosts", o.selfHosts).
			Time("not_after", leaf.NotAfter).Msg("serving a self-signed certificate generated at start-up; clients will not trust it")
	}
	tlsConfig := src.ServerTLSConfig(o.policy, !o.disableAuth)
	tlsConfig.SessionTicketsDisabled = !o.tickets
	cfg := o.common.proxyConfig(proxy.ModeServer, listen, target, tlsConfig, log)
	if err := o.shield.apply(&cfg); err != nil {
		return proxy.Config{}, nil, err
	}
	if err := o.proxyProtocol(&cfg); err != nil {
		return proxy.Config{}, nil, err
	}
	if err := o.acceptProxy.apply(&cfg); err != nil {
		return proxy.Config{}, nil, err
	}
	return cfg, src, nil
}

// checkAuthFlags enforces that client authentication is on unless turned
// off explicitly, and that an on switch says who is allowed.
func (o *serverOptions) checkAuthFlags() error {
	p := o.policy
	rules := len(p.CNs) + len(p.OUs) + len(p.DNSNames) + len(p.URIs)
	switch {
	case o.disableAuth && (rules > 0 || p.AllowAll):
		return flagError("disable-authentication", "cannot be combined with --allow-* flags")
	case o.disableAuth && o.caFile != "":
		return flagError("disable-authentication", "cannot be combined with --cacert")
	case o.disableAuth:
		return nil
	case rules == 0 && !p.AllowAll:
		return flagError("disable-authentication", "client authentication is required by default: give --cacert with --allow-cn, --allow-ou, --allow-dns, --allow-uri or --allow-all, or --disable-authentication to accept any client")
	}
	var pe *certs.PolicyError
	if err := p.Check(); errors.As(err, &pe) {
		return policyError(pe)
	}
	return nil
}

// source loads the serving certificate from exactly one of --cert/--key,
// --cert-dir and --self-signed.
func (o *serverOptions) source() (*certs.Source, error) {
	if o.common.ghost.keystore != "" {
		return o.common.ghost.keystoreSource(o.caFile, flagsGiven(map[string]bool{"cert": len(o.certFiles) > 0, "key": len(o.keyFiles) > 0, "cert-dir": len(o.certDirs) > 0, "self-signed": o.selfSigned})...)
	}
	given := 0
	for _, set := range []bool{len(o.certFiles) > 0 || len(o.keyFiles) > 0, len(o.certDirs) > 0, o.selfSigned} {
		if set {
			given++
		}
	}
	switch {
	case given == 0:
		return nil, flagError("cert", "no certificate: give --cert and --key, --keystore, --cert-dir, or --self-signed")
	case given > 1:
		return nil, flagError("cert", "give only one of --cert/--key, --cert-dir and --self-signed")
	case o.selfSigned:
		cert, err := certs.SelfSigned(o.selfHosts)
		if err != nil {
			return nil, &blame{flag: "self-signed", err: err}
		}
		if o.caFile == "" {
			return certs.NewStaticSource(cert), nil
		}
		src, err := certs.NewStaticSourceWithCA(cert, o.caFile)
		if err != nil {
			return nil, fileFailure("cacert", o.caFile, err)
		}
		return src, nil
	case len(o.certDirs) > 0:
		return o.dirSources()
	}
	return o.pairSources()
}

// proxyProtocol sets up the PROXY protocol header for --proxy-protocol.
func (o *serverOptions) proxyProtocol(cfg *proxy.Config) error {
	var version int
	switch o.proxyProto {
	case "":
		return nil
	case "v1", "1":
		version = 1
	case "v2", "2":
		version = 2
	default:
		return flagError("proxy-protocol", "unknown version %q (want v1 or v2)", o.proxyProto)
	}
	o.common.status.proxyProtocol = version
	cfg.UpstreamHeader = func(client, local netip.AddrPort, cs *tls.ConnectionState) []byte {
		return proxyproto.ForConnection(version, client, local, cs)
	}
	return nil
}
