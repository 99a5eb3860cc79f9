package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-proxy/moat/internal/testpki"
)

// The crypto policy flags against real peers: gnutls-cli picks the groups
// it offers with --priority, openssl s_client its versions with -tls1_2
// and -tls1_3. OpenSSL before 3.5 and the GnuTLS of Debian 12 have no hybrid
// post-quantum group, which is what makes them the classic clients
// --require-pq must refuse; a Go client, which offers X25519MLKEM768 by
// default, is the post-quantum one.

// gnutlsGroups connects gnutls-cli offering groups (GnuTLS's names, most
// preferred first) and returns its output once the handshake is over.
func gnutlsGroups(t *testing.T, addr string, f testpki.Files, groups ...string) string {
	t.Helper()
	gnutls := needTool(t, "gnutls-cli")
	prio := "NORMAL:-GROUP-ALL"
	for _, g := range groups {
		prio += ":+GROUP-" + g
	}
	_, port, _ := strings.Cut(addr, ":")
	cmd := exec.Command(gnutls, "--x509cafile", f.CA, "--priority", prio, "-p", port, "localhost")
	cmd.Stdin = strings.NewReader("")
	out, _ := cmd.CombinedOutput()
	return string(out)
}

// TestTLSGroupsOrderOfPreference: the server takes the first group of
// --tls-groups the client offers, whatever the client's own order; a
// client with none of them is refused with a line naming the flag.
func TestTLSGroupsOrderOfPreference(t *testing.T) {
	f := serverFiles(t)
	up := startUpstream(t, upperEcho)
	for _, c := range []struct {
		flag string
		want string // the key exchange gnutls-cli reports
	}{
		{"X25519,P-256", "(ECDHE-X25519)"},
		{"P-256,X25519", "(ECDHE-SECP256R1)"},
		{"secp384r1,X25519,P-256", "(ECDHE-SECP384R1)"},
	} {
		t.Run(c.flag, func(t *testing.T) {
			m, addr := moatServer(t, f, up.addr(), "--tls-groups", c.flag)
			m.waitFor(t, `"tls_groups":"`, step)
			// The client prefers P-256, then X25519, then P-384.
			out := gnutlsGroups(t, addr, f, "SECP256R1", "X25519", "SECP384R1")
			if !strings.Contains(out, "Handshake was completed") || !strings.Contains(out, c.want) {
				t.Fatalf("--tls-groups %s: want %s negotiated:\n%s", c.flag, c.want, out)
			}
		})
	}
	m, addr := moatServer(t, f, up.addr(), "--tls-groups", "X25519,P-256")
	out := gnutlsGroups(t, addr, f, "SECP384R1", "SECP521R1")
	if strings.Contains(out, "Handshake was completed") {
		t.Fatalf("a client without X25519 or P-256 completed the handshake:\n%s", out)
	}
	m.waitFor(t, "the client supports none of the key exchange groups --tls-groups allows (X25519,P-256)", step)
}

// TestMinTLSVersion13 in both modes: a TLS 1.2 peer fails the handshake
// and moat's line says which flag refused it; TLS 1.3 is served.
func TestMinTLSVersion13(t *testing.T) {
	f := serverFiles(t)
	up := startUpstream(t, upperEcho)
	m, addr := moatServer(t, f, up.addr(), "--min-tls-version", "1.3")
	old := sClient(t, addr, f, "-tls1_2")
	old.waitFor(t, "alert protocol version", step)
	m.waitFor(t, "the client does not speak TLS 1.3, which --min-tls-version 1.3 requires", step)
	c := sClient(t, addr, f, "-tls1_3", "-quiet")
	fmt.Fprintln(c.stdin, "tls13 only")
	c.waitFor(t, "TLS13 ONLY", step)

	p := newClientPKI(t)
	srv, tlsAddr := startSServer(t, "-cert", p.server.Cert, "-key", p.server.Key, "-tls1_2")
	client, listen := startClient(t, tlsAddr, "--cacert", p.server.CA, "--server-name", "localhost", "--min-tls-version", "1.3")
	a := dialApp(t, "tcp", listen)
	a.writeLine(t, "never arrives")
	a.expectClosed(t)
	client.waitFor(t, "--min-tls-version 1.3 requires", step)
	if strings.Contains(srv.output(), "never arrives") {
		t.Fatal("plaintext crossed a TLS 1.2 connection")
	}
}

// TestRequirePQServer: classic clients (openssl s_client, gnutls-cli)
// fail the handshake with a clear line; a Go client negotiates
// X25519MLKEM768 and relays.
func TestRequirePQServer(t *testing.T) {
	f := serverFiles(t)
	up := startUpstream(t, upperEcho)
	m, addr := moatServer(t, f, up.addr(), "--require-pq")
	m.waitFor(t, `"min_tls_version":"TLS 1.3","require_pq":true,"tls_groups":"X25519MLKEM768,SecP256r1MLKEM768,SecP384r1MLKEM1024"`, step)

	classic := sClient(t, addr, f, "-tls1_3")
	classic.waitFor(t, "handshake failure", step)
	m.waitFor(t, "the client offers no hybrid post-quantum key exchange; --require-pq allows only X25519MLKEM768,SecP256r1MLKEM768,SecP384r1MLKEM1024", step)
	if out := gnutlsGroups(t, addr, f, "X25519", "SECP256R1"); strings.Contains(out, "Handshake was completed") {
		t.Fatalf("gnutls-cli without a hybrid group completed the handshake:\n%s", out)
	}
	old := sClient(t, addr, f, "-tls1_2")
	old.waitFor(t, "alert protocol version", step)
	m.waitFor(t, "the client does not speak TLS 1.3, which --require-pq requires", step)

	if opensslHasMLKEM(t) {
		pq := sClient(t, addr, f, "-groups", "X25519MLKEM768", "-quiet")
		fmt.Fprintln(pq.stdin, "openssl with ml-kem")
		pq.waitFor(t, "OPENSSL WITH ML-KEM", step)
	} else {
		t.Log("this openssl has no X25519MLKEM768 (OpenSSL 3.5+ has); the post-quantum peer is a Go client")
	}
	conn, err := tlsDialFiles(addr, f)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if cs := conn.ConnectionState(); cs.CurveID != tls.X25519MLKEM768 {
		t.Fatalf("negotiated %v, want X25519MLKEM768", cs.CurveID)
	}
	fmt.Fprintln(conn, "post quantum")
	conn.SetReadDeadline(time.Now().Add(step))
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || line != "POST QUANTUM\n" {
		t.Fatalf("read %q, %v", line, err)
	}
}

// TestRequirePQClient: moat client --require-pq fails against a server
// without hybrid groups (openssl s_server) with a line saying why, and
// relays through moat server, which has them by default.
func TestRequirePQClient(t *testing.T) {
	p := newClientPKI(t)
	srv, tlsAddr := startSServer(t, "-cert", p.server.Cert, "-key", p.server.Key)
	client, listen := startClient(t, tlsAddr, "--cacert", p.server.CA, "--server-name", "localhost", "--require-pq")
	a := dialApp(t, "tcp", listen)
	a.writeLine(t, "must not arrive")
	a.expectClosed(t)
	client.waitFor(t, "the server refused the handshake; it may not support the key exchange groups moat offers (X25519MLKEM768,SecP256r1MLKEM768,SecP384r1MLKEM1024)", step)
	if strings.Contains(srv.output(), "must not arrive") {
		t.Fatal("plaintext reached a server without post-quantum key exchange")
	}

	up := startUpstream(t, upperEcho)
	_, addr := moatServer(t, p.server, up.addr())
	_, listen2 := startClient(t, addr, "--cacert", p.server.CA, "--server-name", "localhost", "--require-pq")
	b := dialApp(t, "tcp", listen2)
	b.writeLine(t, "hybrid both ends")
	b.expectLine(t, "HYBRID BOTH ENDS")
}

// opensslHasMLKEM reports whether this openssl can offer X25519MLKEM768.
func opensslHasMLKEM(t *testing.T) bool {
	out, _ := exec.Command(needTool(t, "openssl"), "list", "-kem-algorithms").CombinedOutput()
	return strings.Contains(strings.ToUpper(string(out)), "MLKEM768")
}

// TestFIPSModeIsVisible: under GODEBUG=fips140=on, moat version says so,
// moat_fips140_enabled is 1, X25519 (not approved) is refused and P-256
// is served; --tls-groups X25519 is refused at start. Without it the
// gauge is 0.
func TestFIPSModeIsVisible(t *testing.T) {
	up := startUpstream(t, upperEcho)
	off := startOps(t, up.addr())
	if v := value(off.metrics(t), "moat_fips140_enabled", nil); v != 0 {
		t.Fatalf("moat_fips140_enabled = %v without GODEBUG=fips140", v)
	}

	t.Setenv("GODEBUG", "fips140=on")
	out, err := exec.Command(moatBin, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "fips140=on") {
		t.Fatalf("moat version under fips140=on: %v: %s", err, out)
	}
	o := startOps(t, up.addr())
	o.m.waitFor(t, "FIPS 140-3 mode is on", step)
	if v := value(o.metrics(t), "moat_fips140_enabled", nil); v != 1 {
		t.Fatalf("moat_fips140_enabled = %v under fips140=on", v)
	}
	openssl := needTool(t, "openssl")
	x := start(t, openssl, "s_client", "-connect", o.addr, "-groups", "X25519")
	x.waitFor(t, "handshake failure", step)
	p256 := start(t, openssl, "s_client", "-connect", o.addr, "-groups", "P-256", "-quiet")
	fmt.Fprintln(p256.stdin, "approved")
	p256.waitFor(t, "APPROVED", step)

	f := serverFiles(t)
	refused, err := exec.Command(moatBin, "server", "--dry-run", "--listen", "127.0.0.1:1", "--target", "127.0.0.1:2",
		"--cert", f.Cert, "--key", f.Key, "--disable-authentication", "--tls-groups", "X25519").CombinedOutput()
	if err == nil || !strings.Contains(string(refused), "--tls-groups: X25519: not allowed in FIPS 140-3 mode") {
		t.Fatalf("--tls-groups X25519 under fips140=on: %v: %s", err, refused)
	}
}

// TestFIPSFrozenModuleBuild builds moat the way the Dockerfile's GOFIPS140
// argument does, against the frozen Go Cryptographic Module v1.0.0: the
// binary runs in FIPS mode without being told, says so, and under
// GODEBUG=fips140=only serves an approved key exchange and refuses X25519.
func TestFIPSFrozenModuleBuild(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "moat")
	build := exec.Command("go", "build", "-o", bin, "..")
	build.Env = append(os.Environ(), "GOFIPS140=v1.0.0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("GOFIPS140=v1.0.0 go build: %v\n%s", err, out)
	}
	version := exec.Command(bin, "version")
	version.Env = withoutGODEBUG()
	if out, err := version.CombinedOutput(); err != nil || !strings.Contains(string(out), "fips140=on, module v1.0.0") {
		t.Fatalf("moat version of the FIPS build: %v: %s", err, out)
	}
	t.Setenv("GODEBUG", "fips140=only")
	f := serverFiles(t)
	up := startUpstream(t, upperEcho)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	m := start(t, bin, "server", "--listen", addr, "--target", up.addr(), "--cert", f.Cert, "--key", f.Key, "--disable-authentication")
	m.waitFor(t, "moat is listening", step)
	m.waitFor(t, `"enforced":true`, step)
	x := sClient(t, addr, f, "-groups", "X25519")
	x.waitFor(t, "handshake failure", step)
	ok := sClient(t, addr, f, "-groups", "P-256", "-quiet")
	fmt.Fprintln(ok.stdin, "validated module")
	ok.waitFor(t, "VALIDATED MODULE", step)
}

func withoutGODEBUG() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			env = append(env, kv)
		}
	}
	return env
}
