package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-proxy/moat/internal/testpki"
)

// svid issues, from an openssl CA, a server certificate shaped like an
// X.509-SVID: no CN, no DNS or IP SAN, only the URI SAN id.
func svid(t testing.TB, ca *opensslCA, name, id string) (crt, key string) {
	return ca.issue(t, name, "/O=SPIRE", "keyUsage=critical,digitalSignature",
		"extendedKeyUsage=serverAuth,clientAuth", "subjectAltName=URI:"+id)
}

// TestClientVerifyURIWithOpenSSLServer: `moat client --verify-uri` talks to
// an openssl s_server whose certificate carries only a SPIFFE ID when the
// ID matches (exactly, or through a wildcard under ghostunnel's
// --verify-uri-san spelling), and refuses it otherwise: the app's
// connection is closed and one log line says which identity the server
// presented and which was required. Without --verify-uri the host name
// check refuses it, as before.
func TestClientVerifyURIWithOpenSSLServer(t *testing.T) {
	ca := newOpenSSLCA(t)
	crt, key := svid(t, ca, "postgres", "spiffe://td/ns/db/sa/postgres")
	for _, tc := range []struct {
		name   string
		args   []string
		admits bool
		log    []string
	}{
		{"exact", []string{"--verify-uri", "spiffe://td/ns/db/sa/postgres"}, true,
			[]string{`"peer_spiffe_id":"spiffe://td/ns/db/sa/postgres"`}},
		{"wildcard, ghostunnel spelling", []string{"--verify-uri-san", "spiffe://td/ns/db/**"}, true, nil},
		{"any one of several", []string{"--verify-dns", "db.internal", "--verify-uri", "spiffe://td/ns/db/sa/*"}, true, nil},
		{"another identity", []string{"--verify-uri", "spiffe://td/ns/web/*"}, false,
			[]string{`"auth_refused":"not-allowed"`, `"identity":"URI=spiffe://td/ns/db/sa/postgres"`, `"required":"URI=spiffe://td/ns/web/*"`}},
		{"no --verify-uri: the host name check refuses it", nil, false, []string{"doesn't contain any IP SANs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, addr := startSServer(t, "-cert", crt, "-key", key)
			moat, listen := startClient(t, addr, append([]string{"--cacert", ca.crt}, tc.args...)...)
			a := dialApp(t, "tcp", listen)
			if tc.admits {
				exchange(t, srv, a, "svid")
				a.Close()
				moat.waitFor(t, `"message":"connection closed"`, step)
			} else {
				a.writeLine(t, "secret-app-bytes")
				a.expectClosed(t)
				moat.waitFor(t, `"reason":"handshake"`, step)
				if strings.Contains(srv.output(), "secret-app-bytes") {
					t.Fatal("the app's plaintext reached the server")
				}
			}
			for _, s := range tc.log {
				moat.waitFor(t, s, step)
			}
		})
	}
}

// TestClientVerifyWithSocatServer: the same identity check against socat's
// OpenSSL server, matching (by URI) and not (a DNS name the SVID lacks).
func TestClientVerifyWithSocatServer(t *testing.T) {
	socat := needTool(t, "socat")
	ca := newOpenSSLCA(t)
	crt, key := svid(t, ca, "cache", "spiffe://td/ns/cache/sa/redis")
	port := freePort(t)
	start(t, socat, fmt.Sprintf("OPENSSL-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork,cert=%s,key=%s,verify=0", port, crt, key), "EXEC:cat")
	target := fmt.Sprintf("127.0.0.1:%d", port)
	waitListening(t, target)

	_, listen := startClient(t, target, "--cacert", ca.crt, "--verify-uri", "spiffe://td/ns/cache/sa/redis")
	a := dialApp(t, "tcp", listen)
	a.writeLine(t, "ping through socat")
	a.expectLine(t, "ping through socat")

	moat, listen := startClient(t, target, "--cacert", ca.crt, "--verify-dns", "redis.internal")
	a = dialApp(t, "tcp", listen)
	a.writeLine(t, "secret")
	a.expectClosed(t)
	moat.waitFor(t, `"required":"DNS=redis.internal"`, step)
	moat.waitFor(t, `URI=spiffe://td/ns/cache/sa/redis`, step)
}

// TestClientRefusesRevokedServer: `moat client --crl` with a CRL from
// `openssl ca -gencrl` refuses an openssl s_server whose certificate it
// revokes (logged as revoked), and talks to one whose certificate it does
// not; --override-server-name names the certificate's DNS name while
// --target is an IP address.
func TestClientRefusesRevokedServer(t *testing.T) {
	ca := newOpenSSLCA(t)
	goodCrt, goodKey := ca.issue(t, "good", "/CN=good", "extendedKeyUsage=serverAuth", "subjectAltName=DNS:db.internal")
	badCrt, badKey := ca.issue(t, "bad", "/CN=bad", "extendedKeyUsage=serverAuth", "subjectAltName=DNS:db.internal")
	ca.revoke(t, badCrt)
	crl := filepath.Join(ca.dir, "crl.pem")
	ca.gencrl(t, crl)
	args := []string{"--cacert", ca.crt, "--crl", crl, "--override-server-name", "db.internal"}

	srv, addr := startSServer(t, "-cert", goodCrt, "-key", goodKey)
	_, listen := startClient(t, addr, args...)
	exchange(t, srv, dialApp(t, "tcp", listen), "unrevoked")

	srv, addr = startSServer(t, "-cert", badCrt, "-key", badKey)
	moat, listen := startClient(t, addr, args...)
	a := dialApp(t, "tcp", listen)
	a.writeLine(t, "secret-app-bytes")
	a.expectClosed(t)
	moat.waitFor(t, `"auth_refused":"revoked"`, step)
	moat.waitFor(t, `server certificate refused (revoked)`, step)
	if strings.Contains(srv.output(), "secret-app-bytes") {
		t.Fatal("the app's plaintext reached the revoked server")
	}
}

// TestClientOverrideServerNameSetsSNI: --override-server-name is sent as
// SNI and verified, like --server-name.
func TestClientOverrideServerNameSetsSNI(t *testing.T) {
	ca := testpki.NewCA()
	srv := startGoServer(t, serverConfig(ca.Issue("db.internal")))
	_, listen := startClient(t, srv.addr, "--cacert", writeCA(t, ca), "--override-server-name", "db.internal")
	a := dialApp(t, "tcp", listen)
	sc := srv.next(t)
	if sc.handshakeErr != nil || sc.state.ServerName != "db.internal" {
		t.Fatalf("handshake %v, SNI %q; want db.internal", sc.handshakeErr, sc.state.ServerName)
	}
	a.writeLine(t, "ping")
	sc.expectLine(t, "ping")
}

// TestIdentityFlagsBadInput: misused identity and CRL flags stop moat at
// start, non-zero, with one line naming the flag and, for a file, the file.
func TestIdentityFlagsBadInput(t *testing.T) {
	ca := testpki.NewCA()
	srv, err := ca.Issue("localhost", "127.0.0.1").WritePEM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	garbage, stranger, missing := filepath.Join(dir, "garbage.crl"), filepath.Join(dir, "stranger.crl"), filepath.Join(dir, "missing.crl")
	write(t, garbage, "not a CRL")
	write(t, stranger, pemCRL(goCRL(t, testpki.NewNamedCA("stranger"), time.Now().Add(time.Hour))))
	client := []string{"client", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:9"}
	server := []string{"server", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:9", "--cert", srv.Cert, "--key", srv.Key, "--cacert", srv.CA, "--allow-all"}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"verify-uri without cacert", append(client, "--verify-uri", "spiffe://td/x"), []string{"--verify-uri: needs --cacert"}},
		{"verify-cn without cacert", append(client, "--verify-cn", "db"), []string{"--verify-cn: needs --cacert"}},
		{"bad verify-uri pattern", append(client, "--cacert", srv.CA, "--verify-uri", "spiffe://td/a*b"), []string{"--verify-uri:", "whole path segment"}},
		{"two server names", append(client, "--server-name", "a.internal", "--override-server-name", "b.internal"), []string{"--override-server-name:"}},
		{"client crl without cacert", append(client, "--crl", stranger), []string{"--crl: needs --cacert"}},
		{"missing crl", append(server, "--crl", missing), []string{"--crl:", missing, "no such file"}},
		{"garbage crl", append(server, "--crl", garbage), []string{"--crl:", garbage, "not a PEM or DER CRL"}},
		{"crl from a stranger", append(server, "--crl", stranger), []string{"--crl:", stranger, "not a CA in the CA bundle"}},
		{"crl in client mode from a stranger", append(client, "--cacert", srv.CA, "--crl", stranger), []string{"--crl:", stranger}},
		{"bad crl-expired", append(server, "--crl", stranger, "--crl-expired", "maybe"), []string{"--crl-expired:", "warn or refuse"}},
		{"crl without authentication", []string{"server", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:9", "--self-signed", "--disable-authentication", "--crl", stranger}, []string{"--crl:", "--disable-authentication"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, moatBin, tc.args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Run(); err == nil || cmd.ProcessState.ExitCode() <= 0 {
				t.Fatalf("exit %v, want non-zero; stderr %q", err, stderr.String())
			}
			out := strings.TrimSpace(stderr.String())
			if strings.Count(out, "\n") != 0 || strings.Contains(out, "panic") {
				t.Fatalf("want one line, got %q", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Fatalf("error %q does not mention %q", out, w)
				}
			}
		})
	}
}

// TestClientResumptionRefusedAfterServerRevoked: moat client resumes its
// session with a Go server (TLS 1.2 and 1.3) while the server's
// certificate is good; once a CRL swapped into the watched volume revokes
// it, the next connection, which offers that session again, is refused.
func TestClientResumptionRefusedAfterServerRevoked(t *testing.T) {
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			ca := testpki.NewCA()
			leaf := ca.Issue("127.0.0.1")
			cfg := serverConfig(leaf)
			cfg.MaxVersion = version
			srv := startGoServer(t, cfg)
			vol := newKubeDir(t, map[string]string{"ca.crl": pemCRL(goCRL(t, ca, time.Now().Add(time.Hour)))})
			moat, listen := startClient(t, srv.addr, "--cacert", writeCA(t, ca), "--crl", vol.path("ca.crl"))
			for i, resumed := range []bool{false, true} {
				a := dialApp(t, "tcp", listen)
				sc := srv.next(t)
				if sc.handshakeErr != nil || sc.state.DidResume != resumed {
					t.Fatalf("connection %d: handshake %v, resumed %v; want resumed %v", i+1, sc.handshakeErr, sc.state.DidResume, resumed)
				}
				a.writeLine(t, "ping") // lets moat read the TLS 1.3 session ticket
				sc.expectLine(t, "ping")
				a.Close()
			}
			vol.swap(t, map[string]string{"ca.crl": pemCRL(goCRL(t, ca, time.Now().Add(time.Hour), leaf.Cert.SerialNumber))})
			moat.waitFor(t, "revocation lists reloaded", step)
			a := dialApp(t, "tcp", listen)
			a.writeLine(t, "secret-app-bytes")
			a.expectClosed(t)
			sc := srv.next(t)
			if sc.handshakeErr == nil {
				t.Fatal("the server completed a handshake after its certificate was revoked")
			}
			moat.waitFor(t, `"auth_refused":"revoked"`, step)
		})
	}
}
