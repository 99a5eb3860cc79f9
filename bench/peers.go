package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// peer is one TLS terminator under test.
type peer struct {
	name string
	// direct peers are the upstream themselves: no plaintext upstream, no
	// relay, the ceiling for handshakes and bulk.
	direct bool
	// plain peers speak no TLS: the tcp-loopback target, the upstream's own
	// sink and source reached over plain TCP, which is one plaintext leg's
	// cost. Only the bulk transfers run against it.
	plain bool
	// argv returns the command line for an instance listening on listen and
	// relaying to target, writing any config file into dir.
	argv func(e *runEnv, dir, listen, target string, cert certFiles) ([]string, error)
	// missing is why this peer cannot run here, or "".
	missing string
}

// runEnv is what starting a peer needs to know about the run.
type runEnv struct {
	exe      string // this bench binary, for the upstream, iocopy and direct roles
	moatBin  string // built moat binary, "" when unavailable
	ghostBin string // ghostunnel binary, "" when none was given
	tmp      string
	idle     int // connections the idle test holds, for maxconn settings
}

// allPeers lists every peer in table order. moat first: it is the subject.
func allPeers(e *runEnv, moatMissing string) []*peer {
	ghostMissing := ""
	if e.ghostBin == "" {
		ghostMissing = "no binary given (-ghostunnel PATH; scripts/build-ghostunnel.sh builds one); iocopy stands in for its design"
	} else if out, err := exec.Command(e.ghostBin, "--version").CombinedOutput(); err != nil {
		ghostMissing = fmt.Sprintf("%s --version failed (%v): %s", e.ghostBin, err, firstLine(string(out)))
	}
	ps := []*peer{
		{name: "moat", argv: moatArgv, missing: moatMissing},
		{name: "ghostunnel", argv: ghostunnelArgv, missing: ghostMissing},
		{name: "iocopy", argv: iocopyArgv},
		{name: "hitch", argv: hitchArgv, missing: needBinary("hitch")},
		{name: "haproxy", argv: haproxyArgv, missing: needBinary("haproxy")},
		{name: "stunnel", argv: stunnelArgv, missing: needBinary("stunnel4")},
		{name: "direct", direct: true, argv: directArgv},
		{name: "tcp-loopback", direct: true, plain: true, argv: tcpLoopbackArgv},
	}
	return ps
}

// needBinary reports a missing Debian package as a reason.
func needBinary(name string) string {
	if _, err := exec.LookPath(name); err != nil {
		return fmt.Sprintf("%s not installed (apt-get install -y hitch haproxy stunnel4)", name)
	}
	return ""
}

func moatArgv(e *runEnv, _, listen, target string, cert certFiles) ([]string, error) {
	return []string{e.moatBin, "server", "--listen", listen, "--target", target,
		"--cert", cert.Chain, "--key", cert.Key, "--disable-authentication", "--log-level", "warn"}, nil
}

func iocopyArgv(e *runEnv, _, listen, target string, cert certFiles) ([]string, error) {
	return []string{e.exe, "iocopy-relay", "-listen", listen, "-target", target, "-cert", cert.Chain, "-key", cert.Key}, nil
}

// ghostunnelArgv: ghostunnel's server mode with the same certificate, no
// client authentication, TLS 1.2 and 1.3 (its default floor is 1.2), and
// the default cipher preferences of crypto/tls, which it uses.
func ghostunnelArgv(e *runEnv, _, listen, target string, cert certFiles) ([]string, error) {
	return []string{e.ghostBin, "server", "--listen", listen, "--target", target,
		"--cert", cert.Chain, "--key", cert.Key, "--disable-authentication", "--quiet=all"}, nil
}

// tcpLoopbackArgv is the upstream role itself, listening where the proxy
// would: the load client reaches its sink and source over plain TCP.
func tcpLoopbackArgv(e *runEnv, _, listen, _ string, _ certFiles) ([]string, error) {
	return []string{e.exe, "upstream", "-listen", listen}, nil
}

func directArgv(e *runEnv, _, listen, _ string, cert certFiles) ([]string, error) {
	return []string{e.exe, "direct", "-listen", listen, "-cert", cert.Chain, "-key", cert.Key}, nil
}

// The cipher order every OpenSSL peer is given, so that all of them run the
// AES-128-GCM that crypto/tls picks on AES-NI hardware. OpenSSL's default
// prefers AES-256-GCM, which would make the C peers slower for a reason that
// has nothing to do with their design.
const (
	tls13Suites  = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
	tls12Ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305"
)

// hostPort splits "127.0.0.1:P" for configs that want "[host]:port".
func hostPort(addr string) (string, string) {
	i := strings.LastIndexByte(addr, ':')
	return addr[:i], addr[i+1:]
}

// hitchArgv: one worker (one core), TLS 1.2 and 1.3, no shared session
// cache, no OCSP fetching, no logs.
func hitchArgv(_ *runEnv, dir, listen, target string, cert certFiles) ([]string, error) {
	lh, lp := hostPort(listen)
	th, tp := hostPort(target)
	conf := fmt.Sprintf(`frontend = "[%s]:%s"
backend = "[%s]:%s"
pem-file = "%s"
tls-protos = TLSv1.2 TLSv1.3
ciphers = "%s"
ciphersuites = "%s"
prefer-server-ciphers = on
workers = 1
daemon = off
ocsp-dir = "%s"
syslog = off
quiet = on
log-level = 0
backlog = 4096
`, lh, lp, th, tp, cert.Combined, tls12Ciphers, tls13Suites, dir)
	if os.Geteuid() == 0 {
		// hitch refuses to run its workers as root; the certificate is read
		// before it drops privileges, so the files may stay private.
		conf += "user = \"nobody\"\ngroup = \"nogroup\"\n"
	}
	path := filepath.Join(dir, "hitch.conf")
	return []string{"hitch", "--config", path}, os.WriteFile(path, []byte(conf), 0o600)
}

// haproxyArgv: tcp mode, one thread, TLS 1.2+, no tickets and no session
// cache, maxconn above the idle test, no logging configured.
func haproxyArgv(e *runEnv, dir, listen, target string, cert certFiles) ([]string, error) {
	conf := fmt.Sprintf(`global
    nbthread 1
    maxconn %d
    tune.ssl.cachesize 0
    ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets
    ssl-default-bind-ciphers %s
    ssl-default-bind-ciphersuites %s
defaults
    mode tcp
    timeout connect 10s
    timeout client 1h
    timeout server 1h
frontend fe
    bind %s ssl crt %s
    default_backend be
backend be
    server up %s
`, e.idle+500, tls12Ciphers, tls13Suites, listen, cert.Combined, target)
	path := filepath.Join(dir, "haproxy.cfg")
	return []string{"haproxy", "-db", "-q", "-f", path}, os.WriteFile(path, []byte(conf), 0o600)
}

// stunnelArgv: foreground, TLS 1.2+1.3, no tickets, TCP_NODELAY both sides
// (stunnel leaves Nagle on otherwise, which would only measure Nagle), logs
// at the lowest level.
func stunnelArgv(_ *runEnv, dir, listen, target string, cert certFiles) ([]string, error) {
	conf := fmt.Sprintf(`foreground = yes
pid =
debug = 0
syslog = no
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
[bench]
accept = %s
connect = %s
cert = %s
key = %s
sslVersionMin = TLSv1.2
sslVersionMax = TLSv1.3
options = NO_TICKET
options = CIPHER_SERVER_PREFERENCE
ciphers = %s
ciphersuites = %s
sessionCacheSize = 1
TIMEOUTidle = 3600
`, listen, target, cert.Chain, cert.Key, tls12Ciphers, tls13Suites)
	path := filepath.Join(dir, "stunnel.conf")
	return []string{"stunnel4", path}, os.WriteFile(path, []byte(conf), 0o600)
}
