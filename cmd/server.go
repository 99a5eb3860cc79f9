package cmd

import (
	"crypto/tls"

	"github.com/spf13/cobra"

	"github.com/moat-proxy/moat/certs"
	"github.com/moat-proxy/moat/proxy"
)

// serverOptions are the flags of `moat server`.
type serverOptions struct {
	common      commonOptions
	certFile    string
	keyFile     string
	certDir     string
	selfSigned  bool
	selfHosts   []string
	disableAuth bool
}

func init() { extraCommands = append(extraCommands, newServerCommand) }

func newServerCommand() *cobra.Command {
	o := &serverOptions{}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Accept TLS and relay the plaintext to a local upstream",
		Long: `Accept TLS connections on --listen, check who the client is, and relay the
plaintext to --target (host:port or unix:/path).

Client authentication is required by default; --disable-authentication turns
it off explicitly.`,
		Example: `  moat server --listen 127.0.0.1:8443 --target 127.0.0.1:8080 --cert tls.crt --key tls.key --disable-authentication
  moat server --listen :8443 --target unix:/run/app.sock --self-signed --disable-authentication`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	f := cmd.Flags()
	o.common.register(f, "address to accept TLS on: host:port", "upstream to relay plaintext to: host:port or unix:/path")
	f.StringVar(&o.certFile, "cert", "", "PEM file with the server certificate chain, leaf first")
	f.StringVar(&o.keyFile, "key", "", "PEM file with the server private key")
	f.StringVar(&o.certDir, "cert-dir", "", "directory holding tls.crt, tls.key and optional ca.crt (a Kubernetes TLS Secret mount); reloaded on change")
	f.BoolVar(&o.selfSigned, "self-signed", false, "serve a certificate generated in memory at start-up (its SHA-256 fingerprint is logged)")
	f.StringSliceVar(&o.selfHosts, "self-signed-hosts", []string{"localhost", "127.0.0.1", "::1"}, "names and addresses of the --self-signed certificate")
	f.BoolVar(&o.disableAuth, "disable-authentication", false, "accept clients without a certificate (client authentication is required otherwise)")
	return cmd
}

func (o *serverOptions) run(cmd *cobra.Command) error {
	log, err := newLogger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	listen, target, err := o.common.addresses()
	if err != nil {
		return err
	}
	if !o.disableAuth {
		return flagError("disable-authentication", "client authentication is required by default: give --disable-authentication to accept clients without a certificate")
	}
	src, err := o.source()
	if err != nil {
		return err
	}
	if o.selfSigned {
		leaf := src.Certificate().Leaf
		log.Warn().Str("sha256_fingerprint", certs.Fingerprint(leaf)).Strs("hosts", o.selfHosts).
			Time("not_after", leaf.NotAfter).Msg("serving a self-signed certificate generated at start-up; clients will not trust it")
	}
	tlsConfig := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: src.GetCertificate,
	}
	cfg := o.common.proxyConfig(proxy.ModeServer, listen, target, tlsConfig, log)
	return runProxy(cmd.Context(), cfg, o.common, log, src)
}

// source loads the serving certificate from exactly one of --cert/--key,
// --cert-dir and --self-signed.
func (o *serverOptions) source() (*certs.Source, error) {
	given := 0
	for _, set := range []bool{o.certFile != "" || o.keyFile != "", o.certDir != "", o.selfSigned} {
		if set {
			given++
		}
	}
	switch {
	case given == 0:
		return nil, flagError("cert", "no certificate: give --cert and --key, --cert-dir, or --self-signed")
	case given > 1:
		return nil, flagError("cert", "give only one of --cert/--key, --cert-dir and --self-signed")
	case o.selfSigned:
		cert, err := certs.SelfSigned(o.selfHosts)
		if err != nil {
			return nil, flagError("self-signed", "%v", err)
		}
		return certs.NewStaticSource(cert), nil
	case o.certDir != "":
		src, err := certs.NewDirSource(o.certDir)
		if err != nil {
			return nil, flagError("cert-dir", "%v", err)
		}
		return src, nil
	case o.certFile == "":
		return nil, flagError("cert", "--key given without --cert")
	case o.keyFile == "":
		return nil, flagError("key", "--cert given without --key")
	}
	src, err := certs.NewFileSource(o.certFile, o.keyFile, "")
	if err != nil {
		return nil, flagError("cert", "%v", err)
	}
	return src, nil
}
