package cmd

import (
	"crypto/tls"
	"net/netip"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/moat-proxy/moat/certs"
	"github.com/moat-proxy/moat/endpoint"
	"github.com/moat-proxy/moat/proxy"
)

// clientOptions are the flags of `moat client`.
type clientOptions struct {
	common           commonOptions
	listenMode       string
	caFile           string
	certFile         string
	keyFile          string
	serverName       string
	renegotiation    string
	sessionCacheSize int
	verify           verifyOptions // --verify-*, --override-server-name
	workload         workloadOptions
}

func newClientCommand(logs *logOptions) *cobra.Command { return newClientMode(logs).cmd }

// newClientMode builds the command with its options, for moat run to fill from
// a file.
func newClientMode(logs *logOptions) modeCommand {
	o := &clientOptions{common: commonOptions{logs: logs, plaintext: plaintextSide{flag: "listen"}}}
	cmd := o.common.command(&cobra.Command{
		Use: "client", Args: cobra.NoArgs,
		Short: "Accept plaintext locally and carry it over TLS to a remote server",
		Long: `Accept plaintext connections on --listen (host:port or unix:/path) and carry
each one over TLS to --target. The plaintext stays on this host: --listen must
be a loopback address, localhost or a unix socket unless --unsafe-listen is
given (":6379" and "0.0.0.0:6379" listen on every address).

The server certificate is always verified: against --cacert (the system roots
when it is absent) and against --server-name, which defaults to the host of
--target (an IP address is checked against the certificate's IP SANs).

A TLS 1.2 server may ask for a renegotiation mid-connection, for example to
request a client certificate for a protected resource. --renegotiation never
(the default) refuses it and ends that connection; once and freely allow it.`,
		Example: `  moat client --listen 127.0.0.1:6379 --target redis.example.internal:6380 --cacert ca.pem
  moat client --listen unix:/run/moat/app.sock --listen-mode 0660 --target 10.0.0.7:443 \
      --cacert ca.pem --cert client.crt --key client.key --renegotiation once`,
	}, "address to accept plaintext on: host:port or unix:/path", "TLS server to connect to: host:port", o.configure)
	f := cmd.Flags()
	f.StringVar(&o.listenMode, "listen-mode", "", "permission bits of a unix --listen socket, in octal (e.g. 0660); default: from the umask")
	f.StringVar(&o.caFile, "cacert", "", "PEM file with the CA certificates that sign the server's certificate (default: the system roots); reloaded on change")
	f.StringVar(&o.certFile, "cert", "", "PEM file with the client certificate chain, leaf first, for servers that ask for one; reloaded on change")
	f.StringVar(&o.keyFile, "key", "", "PEM file with the client private key")
	f.StringVar(&o.serverName, "server-name", "", "name the server certificate must carry, also sent as SNI (default: the host of --target)")
	f.StringVar(&o.renegotiation, "renegotiation", "never", "TLS 1.2 renegotiation requested by the server: never, once (per connection) or freely")
	f.IntVar(&o.sessionCacheSize, "session-cache-size", 1024, "TLS sessions kept for resumption on reconnect (0 = no resumption)")
	o.verify.register(f)
	o.workload.register(f)
	o.common.ghost.registerClient(f)
	return modeCommand{cmd: cmd, common: &o.common, configure: o.configure}
}

// configure builds client mode's proxy: plaintext in, TLS out.
func (o *clientOptions) configure(log zerolog.Logger, listen, target endpoint.Address) (proxy.Config, *certs.Source, error) {
	wsrc, err := o.workload.source(log, conflict{"keystore", o.common.ghost.keystore != ""}, conflict{"cert", o.certFile != ""}, conflict{"key", o.keyFile != ""}, conflict{"cacert", o.caFile != ""})
	if err != nil {
		return proxy.Config{}, nil, err
	}
	tlsConfig, src, err := o.tlsConfig(target)
	var identities certs.Policy
	if err == nil && wsrc != nil {
		identities, err = o.workloadServerPolicy(wsrc)
	}
	if err != nil {
		if wsrc != nil {
			wsrc.Close()
		}
		return proxy.Config{}, nil, err
	}
	if wsrc != nil {
		// The SVID is the client certificate and the Workload API's bundle
		// verifies the server; the rest of tlsConfig's choices stand.
		// --verify-* rules replace the name check, as with --cacert.
		wcfg := wsrc.ClientTLSConfig(tlsConfig.ServerName, certs.ServerCheck{Name: tlsConfig.ServerName, Identities: identities})
		wcfg.Renegotiation, wcfg.ClientSessionCache = tlsConfig.Renegotiation, tlsConfig.ClientSessionCache
		tlsConfig, src = wcfg, wsrc
	}
	mode, err := o.socketMode(listen)
	if err != nil {
		return proxy.Config{}, nil, err
	}
	cfg := o.common.proxyConfig(proxy.ModeClient, listen, target, tlsConfig, log)
	cfg.ListenMode = mode
	ev := log.Info().Str("server_name", tlsConfig.ServerName).Str("renegotiation", o.renegotiation).
		Bool("client_certificate", tlsConfig.GetClientCertificate != nil)
	if p := o.verify.policy(); p.Describe() != "" {
		ev = ev.Str("verify_identity", p.Describe()) // replaces the server name check
	}
	ev.Msg("client mode: verifying the server certificate")
	return cfg, src, nil
}

// tlsConfig builds the client side of every connection. The returned Source
// carries the client certificate and the --cacert bundle, whichever are
// given; it is nil when neither is.
func (o *clientOptions) tlsConfig(target endpoint.Address) (*tls.Config, *certs.Source, error) {
	reneg, err := renegotiationPolicy(o.renegotiation)
	if err != nil {
		return nil, nil, err
	}
	serverName, err := o.verify.serverName(o.serverName)
	if err != nil {
		return nil, nil, err
	}
	if err := checkServerNameFlag(serverName); err != nil {
		return nil, nil, err
	}
	if serverName == "" {
		serverName = target.Host()
	}
	if serverName == "" && o.verify.firstFlag() == "" { // --verify-* checks an identity, not a name
		return nil, nil, flagError("server-name", "required when --target is a unix socket (or give --verify-*)")
	}
	if o.sessionCacheSize < 0 {
		return nil, nil, flagError("session-cache-size", "must not be negative")
	}
	cfg := &tls.Config{
		MinVersion:    tls.VersionTLS12,
		CipherSuites:  certs.TLS12CipherSuites(),
		ServerName:    serverName,
		Renegotiation: reneg,
	}
	if o.sessionCacheSize > 0 {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(o.sessionCacheSize)
	}
	src, err := o.source()
	if err != nil {
		return nil, nil, err
	}
	if !o.workload.enabled() { // else configure checks the server against the Workload API's bundle
		if err := o.verifyServer(cfg, src); err != nil {
			return nil, nil, err
		}
	}
	if src != nil && src.Certificate() != nil { // a CA-only Source presents nothing
		cfg.GetClientCertificate = src.GetClientCertificate
	}
	return cfg, src, nil
}

// checkServerNameFlag refuses a --server-name no server could answer to:
// one moat's own server mode, and RFC 6066, would refuse as SNI. An IP
// address is not sent as SNI at all (it is checked against the certificate's
// IP SANs), and crypto/tls drops one trailing dot before sending a name, so
// both are let through.
func checkServerNameFlag(name string) error {
	if _, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(name, "["), "]")); err == nil {
		return nil
	}
	if err := certs.CheckServerName(strings.TrimSuffix(name, ".")); err != nil {
		return flagError("server-name", "%.80q is not a valid DNS host name: %v", name, err)
	}
	return nil
}

// renegotiationPolicy maps --renegotiation to crypto/tls's client policy.
func renegotiationPolicy(s string) (tls.RenegotiationSupport, error) {
	switch s {
	case "never":
		return tls.RenegotiateNever, nil
	case "once":
		return tls.RenegotiateOnceAsClient, nil
	case "freely":
		return tls.RenegotiateFreelyAsClient, nil
	}
	return 0, flagError("renegotiation", "%q: want never, once or freely", s)
}

// socketMode parses --listen-mode, which only means something for a unix
// socket.
func (o *clientOptions) socketMode(listen endpoint.Address) (uint32, error) {
	if o.listenMode == "" {
		return 0, nil
	}
	if listen.Network() != "unix" {
		return 0, flagError("listen-mode", "only applies to a unix:/path --listen")
	}
	m, err := strconv.ParseUint(o.listenMode, 8, 32)
	if err != nil || m == 0 || m > 0o777 {
		return 0, flagError("listen-mode", "%q: want octal permission bits such as 0660", o.listenMode)
	}
	return uint32(m), nil
}

// source loads what client mode reloads, in one Source so that one watch
// and one SIGHUP reload both: the certificate presented to servers that ask
// for one (from --cert/--key or --keystore; none when neither is given or
// --disable-authentication says so) and the --cacert bundle servers are
// verified against. It is nil when there is neither.
func (o *clientOptions) source() (*certs.Source, error) {
	g := &o.common.ghost
	others := flagsGiven(map[string]bool{"cert": o.certFile != "", "key": o.keyFile != "", "keystore": g.keystore != ""})
	switch {
	case g.noClientCert && len(others) > 0:
		return nil, flagError("disable-authentication", "presents no client certificate, so it cannot be combined with %s", strings.Join(others, ", "))
	case g.keystore != "":
		return g.keystoreSource(o.caFile, flagsGiven(map[string]bool{"cert": o.certFile != "", "key": o.keyFile != ""})...)
	case o.certFile != "" || o.keyFile != "":
		return fileSource(o.certFile, o.keyFile, o.caFile)
	case o.caFile != "":
		src, err := certs.NewCASource(o.caFile)
		if err != nil {
			return nil, fileFailure("cacert", o.caFile, err)
		}
		return src, nil
	}
	return nil, nil
}

// workloadServerPolicy is what a server must satisfy besides its chain to
// the Workload API's bundle: the --verify-* rules and the --crl lists
// (verified against that bundle once it arrives).
func (o *clientOptions) workloadServerPolicy(wsrc *certs.Source) (certs.Policy, error) {
	if err := o.verify.check(); err != nil {
		return certs.Policy{}, err
	}
	p := o.verify.policy()
	rev, err := o.common.crl.loadFromWorkloadAPI(wsrc)
	if err != nil {
		return certs.Policy{}, err
	}
	p.Revocation = rev
	return p, nil
}
