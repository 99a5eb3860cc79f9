package cmd

import (
	"crypto/tls"
	"crypto/x509"

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
// certs.ServerCheck when --verify-* or --crl asks for more than it does:
// the chain is still verified against --cacert, then the identity rules
// (or, without any, the server name) and the CRLs decide.
func (o *clientOptions) verifyServer(cfg *tls.Config, pool *x509.CertPool, cas []*x509.Certificate) error {
	if err := o.verify.check(); err != nil {
		return err
	}
	p := o.verify.policy()
	named := o.verify.firstFlag() != ""
	if !named && len(o.common.crl.files) == 0 {
		return nil
	}
	if pool == nil {
		if named {
			return flagError(o.verify.firstFlag(), "needs --cacert or the Workload API (--use-workload-api): the server's chain is verified against that CA bundle before its identity is checked")
		}
		return flagError("crl", "needs --cacert or the Workload API (--use-workload-api): each CRL's signature is verified against that CA bundle")
	}
	rev, err := o.common.crl.load(func() []*x509.Certificate { return cas })
	if err != nil {
		return err
	}
	p.Revocation = rev
	cfg.InsecureSkipVerify = true // replaced by the check below, which verifies the chain itself
	cfg.VerifyConnection = certs.ServerCheck{
		Roots:      func() *x509.CertPool { return pool },
		Name:       cfg.ServerName,
		Identities: p,
	}.Verify
	return nil
}
