package cmd

// The ghostunnel flags moat deliberately does not have, each with why and
// what to use instead. They are taken from ghostunnel's main.go; flags
// moat has under the same name, or an alias of, are not listed. A flag
// given here stops moat at start with one line (ghostunnelOptions.check)
// instead of pflag's "unknown flag".

// flagScope says which commands a ghostunnel flag belongs to.
type flagScope int

const (
	both flagScope = iota
	serverOnly
	clientOnly
)

var unsupported = []struct {
	scope flagScope
	flag  unsupportedFlag
}{
	{both, unsupportedFlag{name: "keychain-identity", why: "moat reads certificates from files only, not from the macOS or Windows keychain; export the identity and give it with --keystore or --cert/--key"}},
	{both, unsupportedFlag{name: "keychain-issuer", why: "moat reads certificates from files only, not from the macOS or Windows keychain; export the identity and give it with --keystore or --cert/--key"}},
	{both, unsupportedFlag{name: "keychain-require-token", bool: true, why: "moat reads certificates from files only, not from the keychain or a hardware token; give them with --keystore or --cert/--key"}},
	{both, unsupportedFlag{name: "pkcs11-module", why: "moat has no PKCS#11 (HSM) support: it is a static binary without cgo; give the certificate and key with --keystore or --cert/--key"}},
	{both, unsupportedFlag{name: "pkcs11-token-label", why: "moat has no PKCS#11 (HSM) support: it is a static binary without cgo; give the certificate and key with --keystore or --cert/--key"}},
	{both, unsupportedFlag{name: "pkcs11-pin", why: "moat has no PKCS#11 (HSM) support: it is a static binary without cgo; give the certificate and key with --keystore or --cert/--key"}},
	{both, unsupportedFlag{name: "metrics-graphite", why: "moat does not push metrics; scrape /metrics (Prometheus) or /_metrics (JSON) on the --status port"}},
	{both, unsupportedFlag{name: "metrics-url", why: "moat does not push metrics; scrape /metrics (Prometheus) or /_metrics (JSON) on the --status port"}},
	{both, unsupportedFlag{name: "metrics-prefix", why: "moat's metrics are named moat_*; relabel them in the scraper if you need another prefix"}},
	{both, unsupportedFlag{name: "metrics-interval", why: "moat does not push metrics, so there is no interval; scrape the --status port as often as you like"}},
	{both, unsupportedFlag{name: "enable-shutdown", bool: true, why: "moat has no /_shutdown endpoint; send SIGTERM for a graceful shutdown (--shutdown-delay, --shutdown-timeout)"}},
	{both, unsupportedFlag{name: "quiet", why: "use --log-level warn to drop the per-connection lines (they are info), or error for failures only"}},
	{both, unsupportedFlag{name: "syslog", bool: true, why: "moat writes JSON lines to stderr; let journald or the container runtime collect them"}},
	{both, unsupportedFlag{name: "close-timeout", why: "moat carries a half-close through both ways and closes when both directions have ended; bound a half-closed connection with --idle-timeout"}},
	{both, unsupportedFlag{name: "skip-resolve", bool: true, why: "moat resolves --target at start to check it, and re-resolves it while running; give an address or a name that resolves"}},
	{both, unsupportedFlag{name: "cipher-suites", why: "moat's TLS 1.2 suites are fixed to ECDHE with AEAD ciphers and TLS 1.3's are all AEAD; use --min-tls-version 1.3 or --tls-groups to tighten the policy"}},
	{both, unsupportedFlag{name: "allow-unsafe-cipher-suites", bool: true, why: "moat offers no cipher suite it considers unsafe"}},
	{both, unsupportedFlag{name: "max-tls-version", why: "moat negotiates up to TLS 1.3; raise the floor with --min-tls-version instead"}},
	{serverOnly, unsupportedFlag{name: "target-status", why: "moat checks the target by connecting to it (/readyz and /_status); an HTTP health check of the target is not supported"}},
	{serverOnly, unsupportedFlag{name: "proxy-protocol-mode", why: "use --proxy-protocol (v2, with ALPN, SNI and client identity TLVs) or --proxy-protocol=v1"}},
	{serverOnly, unsupportedFlag{name: "allow-policy", why: "moat has no OPA policies; use --allow-cn, --allow-ou, --allow-dns or --allow-uri (with * and ** path wildcards)"}},
	{serverOnly, unsupportedFlag{name: "allow-query", why: "moat has no OPA policies; use --allow-cn, --allow-ou, --allow-dns or --allow-uri (with * and ** path wildcards)"}},
	{serverOnly, unsupportedFlag{name: "allow-ip", why: "moat does not match client certificates by IP SAN; use --allow-cn, --allow-dns or --allow-uri"}},
	{serverOnly, unsupportedFlag{name: "allow-ip-san", why: "moat does not match client certificates by IP SAN; use --allow-cn, --allow-dns or --allow-uri"}},
	{serverOnly, unsupportedFlag{name: "allow-spki-pin", why: "moat authenticates clients by their chain to --cacert, not by key pins; issue their certificates from a CA and use --allow-* rules"}},
	{serverOnly, unsupportedFlag{name: "auto-acme-cert", why: "moat does not obtain certificates itself; let cert-manager (the Helm chart's certManager values) or certbot write them and give the files with --cert/--key or --cert-dir (reloaded on change)"}},
	{serverOnly, unsupportedFlag{name: "auto-acme-email", why: "moat does not obtain certificates itself (no ACME); see --auto-acme-cert"}},
	{serverOnly, unsupportedFlag{name: "auto-acme-agree-to-tos", bool: true, why: "moat does not obtain certificates itself (no ACME); see --auto-acme-cert"}},
	{serverOnly, unsupportedFlag{name: "auto-acme-ca", why: "moat does not obtain certificates itself (no ACME); see --auto-acme-cert"}},
	{serverOnly, unsupportedFlag{name: "auto-acme-testca", why: "moat does not obtain certificates itself (no ACME); see --auto-acme-cert"}},
	{serverOnly, unsupportedFlag{name: "auto-acme-renew-check-interval", why: "moat does not obtain certificates itself (no ACME); see --auto-acme-cert"}},
	{serverOnly, unsupportedFlag{name: "auto-acme-alt-tls-alpn-port", why: "moat does not obtain certificates itself (no ACME); see --auto-acme-cert"}},
	{clientOnly, unsupportedFlag{name: "verify-ip", why: "moat checks a server's IP SAN through the host name check: give the address as --target or --server-name; or name the server by --verify-uri, --verify-dns, --verify-cn or --verify-ou"}},
	{clientOnly, unsupportedFlag{name: "verify-ip-san", why: "moat checks a server's IP SAN through the host name check: give the address as --target or --server-name; or name the server by --verify-uri, --verify-dns, --verify-cn or --verify-ou"}},
	{clientOnly, unsupportedFlag{name: "verify-policy", why: "moat has no OPA policies; use --verify-uri (with * and ** path wildcards), --verify-dns, --verify-cn or --verify-ou"}},
	{clientOnly, unsupportedFlag{name: "verify-query", why: "moat has no OPA policies; use --verify-uri (with * and ** path wildcards), --verify-dns, --verify-cn or --verify-ou"}},
	{clientOnly, unsupportedFlag{name: "verify-spki-pin", why: "moat verifies the server by its chain to --cacert (or the Workload API's bundle), not by key pins; use --verify-* rules"}},
	{clientOnly, unsupportedFlag{name: "proxy", why: "moat connects to --target directly; HTTP CONNECT and SOCKS5 proxies are not supported"}},
	{clientOnly, unsupportedFlag{name: "connect-proxy", why: "moat connects to --target directly; HTTP CONNECT and SOCKS5 proxies are not supported"}},
}

// unsupportedFlags returns the flags of one scope, each a fresh copy.
func unsupportedFlags(scope flagScope) []unsupportedFlag {
	var out []unsupportedFlag
	for _, u := range unsupported {
		if u.scope == scope {
			out = append(out, u.flag)
		}
	}
	return out
}
