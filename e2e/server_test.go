package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/moat-proxy/moat/internal/testpki"
)

// moatServer starts `moat server` for files in front of target.
func moatServer(t testing.TB, f testpki.Files, target string, extra ...string) (*process, string) {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := append([]string{"server", "--listen", addr, "--target", target, "--cert", f.Cert, "--key", f.Key,
		"--disable-authentication", "--log-level", "debug"}, extra...)
	return startMoat(t, args...), addr
}

// sClient runs openssl s_client against addr, trusting f's CA.
func sClient(t testing.TB, addr string, f testpki.Files, args ...string) *process {
	t.Helper()
	openssl := needTool(t, "openssl")
	all := append([]string{"s_client", "-connect", addr, "-CAfile", f.CA, "-verify_return_error", "-servername", "localhost"}, args...)
	return start(t, openssl, all...)
}

// TestOpenSSLClientDataBothWays sends lines through moat with s_client
// (TLS 1.3 and 1.2) and reads the upstream's answers.
func TestOpenSSLClientDataBothWays(t *testing.T) {
	for _, version := range []string{"-tls1_3", "-tls1_2"} {
		t.Run(version, func(t *testing.T) {
			f := serverFiles(t)
			up := startUpstream(t, upperEcho)
			_, addr := moatServer(t, f, up.addr())
			c := sClient(t, addr, f, version, "-quiet")
			for _, line := range []string{"hello moat", "second line"} {
				fmt.Fprintln(c.stdin, line)
				c.waitFor(t, strings.ToUpper(line), 10*time.Second)
			}
		})
	}
}

// TestOpenSSLKeyUpdateMidStream: s_client's 'K' sends a TLS 1.3 KeyUpdate
// asking for one back while moat only reads. moat's answer must be flushed
// at once (s_client -msg shows it arrive), and data after it must decrypt.
func TestOpenSSLKeyUpdateMidStream(t *testing.T) {
	f := serverFiles(t)
	up := startUpstream(t, upperEcho)
	_, addr := moatServer(t, f, up.addr())
	c := sClient(t, addr, f, "-tls1_3", "-msg")
	fmt.Fprintln(c.stdin, "before")
	c.waitFor(t, "BEFORE", 10*time.Second)
	fmt.Fprintln(c.stdin, "K")
	c.waitFor(t, "<<< TLS 1.3, Handshake [length 0005], KeyUpdate", 10*time.Second)
	fmt.Fprintln(c.stdin, "after the key update")
	c.waitFor(t, "AFTER THE KEY UPDATE", 10*time.Second)
}

// TestOpenSSLRenegotiationRefused: a client-initiated TLS 1.2
// renegotiation ends that connection with a fatal alert; another
// connection carries on.
func TestOpenSSLRenegotiationRefused(t *testing.T) {
	f := serverFiles(t)
	up := startUpstream(t, upperEcho)
	m, addr := moatServer(t, f, up.addr())
	other := sClient(t, addr, f, "-tls1_2", "-quiet")
	fmt.Fprintln(other.stdin, "bystander")
	other.waitFor(t, "BYSTANDER", 10*time.Second)

	c := sClient(t, addr, f, "-tls1_2", "-msg")
	fmt.Fprintln(c.stdin, "hello")
	c.waitFor(t, "HELLO", 10*time.Second)
	fmt.Fprintln(c.stdin, "R")
	c.waitFor(t, "fatal unexpected_message", 10*time.Second)
	m.waitFor(t, `"reason":"renegotiation refused"`, 10*time.Second)
	m.waitFor(t, "client attempted TLS renegotiation, which moat refuses", time.Second)

	fmt.Fprintln(other.stdin, "still here")
	other.waitFor(t, "STILL HERE", 10*time.Second)
}

// TestTLS12OffersOnlyAEADSuites: a TLS 1.2 client that offers only CBC
// suites is refused; one that offers GCM is served.
func TestTLS12OffersOnlyAEADSuites(t *testing.T) {
	f := serverFiles(t)
	up := startUpstream(t, upperEcho)
	_, addr := moatServer(t, f, up.addr())
	cbc := sClient(t, addr, f, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA")
	cbc.waitFor(t, "handshake failure", 10*time.Second)
	gcm := sClient(t, addr, f, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", "-quiet")
	fmt.Fprintln(gcm.stdin, "aead only")
	gcm.waitFor(t, "AEAD ONLY", 10*time.Second)
}
