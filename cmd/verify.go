package cmd

import (
	"crypto/tls"

	"github.com/spf13/pflag"

	"github.com/moat-proxy/moat/certs"
)

// verifyOptions are client mode's identity flags: which server moat may
// talk to, by identity rather than by host name. ghostunnel's spellings,
// --verify-uri-san and --verify-dns-san, are accepted beside the short ones.
type verifyOptions struct {
	uris, uriSANs, dnsNames, dnsSANs, cns, ous []string
	overrideServerName                         string
}

func (v *verifyOptions) register(f *pflag.FlagSet) {
	f.StringArrayVar(&v.uris, "verify-uri", nil, "accept only a server whose certificate has this URI SAN, e.g. spiffe://td/ns/db/sa/postgres; /* and /** wildcards as in --allow-uri (repeatable; any one --verify-* match admits; replaces the host name check; needs --cacert)")
	f.StringArrayVar(&v.uriSANs, "verify-uri-san", nil, "same as --verify-uri")
	f.StringArrayVar(&v.dnsNames, "verify-dns", nil, "accept only a server whose certificate has this DNS SAN (repeatable)")
	f.StringArrayVar(&v.dnsSANs, "verify-dns-san", nil, "same as --verify-dns")
	f.StringArrayVar(&v.cns, "verify-cn", nil, "accept only a server whose certificate subject CN is this (repeatable)")
	f.StringArrayVar(&v.ous, "verify-ou", nil, "accept only a server whose certificate has this subject OU (repeatable)")
	f.StringVar(&v.overrideServerName, "override-server-name", "", "same as --server-name: the name sent as SNI and, without --verify-*, verified")
}

// policy gathers the rules of every --verify-* flag.
func (v *verifyOptions) policy() certs.Policy {
	return certs.Policy{
		URIs:     append(append([]string(nil), v.uris...), v.uriSANs...),
		DNSNames: append(append([]string(nil), v.dnsNames...), v.dnsSANs...),
		CNs:      v.cns,
		OUs:      v.ous,
	}
}

// firstFlag names a --verify-* flag that was given, for an error.
func (v *verifyOptions) firstFlag() string {
	for _, f := range []struct {
		name string
		set  []string
	}{{"verify-uri", v.uris}, {"verify-uri-san", v.uriSANs}, {"verify-dns", v.dnsNames}, {"verify-dns-san", v.dnsSANs}, {"verify-cn", v.cns}, {"verify-ou", v.ous}} {
		if len(f.set) > 0 {
			return f.name
		}
	}
	return ""
}

// check refuses a --verify-uri that is not a usable pattern.
func (v *verifyOptions) check() error {
	for _, f := range []struct {
		name string
		set  []string
	}{{"verify-uri", v.uris}, {"verify-uri-san", v.uriSANs}} {
		for _, u := range f.set {
			if err := certs.CheckURIPattern(u); err != nil {
				return flagError(f.name, "%v", err)
			}
		}
	}
	return nil
}

// serverName merges --server-name and --override-server-name.
func (v *verifyOptions) serverName(serverName string) (string, error) {
	switch o := v.overrideServerName; {
	case o == "":
		return serverName, nil
	case serverName != "" && serverName != o:
		return "", flagError("override-server-name", "%.80q differs from --server-name %.80q; give one of them", o, serverName)
	default:
		return o, nil
	}
}

// verifyServer replaces crypto/tls's check of the server with
// certs.ServerCheck whenever --cacert is given: crypto/tls's RootCAs is
// fixed for the life of the config, while src reloads the bundle, and
// ServerCheck reads the bundle in service at each handshake (resumed ones
// included). The chain is verified against that bundle, then the identity
// rules (or, without any, the server name, checked as crypto/tls checks
// it) and the CRLs, verified against the bundle in service when they load,
// decide. Without --cacert crypto/tls verifies against the system roots.
func (o *clientOptions) verifyServer(cfg *tls.Config, src *certs.Source) error {
	if err := o.verify.check(); err != nil {
		return err
	}
	if o.caFile == "" {
		if flag := o.verify.firstFlag(); flag != "" {
			return flagError(flag, "needs --cacert or the Workload API (--use-workload-api): the server's chain is verified against that CA bundle before its identity is checked")
		}
		if len(o.common.crl.files) > 0 {
			return flagError("crl", "needs --cacert or the Workload API (--use-workload-api): each CRL's signature is verified against that CA bundle")
		}
		return nil
	}
	p := o.verify.policy()
	rev, err := o.common.crl.load(src.CACertificates)
	if err != nil {
		return err
	}
	p.Revocation = rev
	cfg.InsecureSkipVerify = true // replaced by the check below, which verifies the chain itself
	cfg.VerifyConnection = certs.ServerCheck{
		Roots:      src.CAPool,
		Name:       cfg.ServerName,
		Identities: p,
	}.Verify
	return nil
}
