package cmd

import (
	"crypto/tls"
	"errors"

	"github.com/moat-proxy/moat/certs"
	"github.com/moat-proxy/moat/proxy"
)

// The lower packages report what went wrong as typed values (a file's
// role, a policy rule); this file alone says which flag each one blames.

// fileFlags names the flag that gives a file of each role.
var fileFlags = map[certs.FileRole]string{
	certs.RoleCertificate: "cert",
	certs.RoleKey:         "key",
	certs.RoleCABundle:    "cacert",
	certs.RoleKeystore:    "keystore",
}

// policyFlags names the flag that gives each kind of policy rule.
var policyFlags = map[certs.PolicyRule]string{
	certs.RuleURIs:     "allow-uri",
	certs.RuleAllowAll: "allow-all",
}

// fileFlag names the flag whose file a certs loading error is about. A key
// that does not match its certificate is blamed on --cert, the file that
// says who moat is.
func fileFlag(err error) string {
	var fe *certs.FileError
	if errors.As(err, &fe) {
		if flag, ok := fileFlags[fe.Role]; ok {
			return flag
		}
	}
	return "cert"
}

// policyError turns a certs.PolicyError into a usage error naming the flag
// of the rule at fault, and the flags it clashes with.
func policyError(pe *certs.PolicyError) error {
	flag := policyFlags[pe.Rule]
	if errors.Is(pe.Err, certs.ErrAllowAllWithRules) {
		return flagError(flag, "admits every client of the CA, so it cannot be combined with --allow-cn, --allow-ou, --allow-dns or --allow-uri")
	}
	return flagError(flag, "%v", pe.Err)
}

// limitFlags words each proxy limit for the log: the flag that moves it.
var limitFlags = map[proxy.Limit]string{
	proxy.LimitConns:               "--max-concurrent-conns reached",
	proxy.LimitHandshakeRate:       "--max-handshake-rate exceeded",
	proxy.LimitHandshakes:          "--max-concurrent-handshakes reached",
	proxy.LimitHandshakesPerSource: "--max-handshakes-per-source reached",
	proxy.LimitHandshakeMemory:     "--handshake-memory exceeded by unfinished handshakes",
}

func explainLimit(l proxy.Limit) string { return limitFlags[l] }

// explainRenegotiation words the client's --renegotiation policy that
// refused a server's request, with the value that would allow it.
func explainRenegotiation(r tls.RenegotiationSupport) string {
	switch r {
	case tls.RenegotiateNever:
		return "--renegotiation=never; use --renegotiation=once or freely to allow it"
	case tls.RenegotiateOnceAsClient:
		return "--renegotiation=once; use --renegotiation=freely to allow it"
	}
	return ""
}
