package e2e

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ghostunnel's documented command lines (its README, quickstart, metrics,
// PROXY protocol and access-control pages), run with moat in place of
// ghostunnel, each relaying a round trip with the peers the docs use:
// openssl s_client and s_server, curl, socat (for the docs' nc).

// testKeys lays out a directory like ghostunnel's test-keys: a CA, a
// server and a client certificate as separate PEM files, combined PEM
// keystores and PKCS#12 keystores made by openssl. The client certificate
// has CN client, OU my-service, DNS SAN client.example.com and URI SAN
// spiffe://example.com/client, what the docs' allow flags name.
func testKeys(t *testing.T) string {
	t.Helper()
	openssl := needTool(t, "openssl")
	p := newPKI(t, "ghostunnel test CA")
	dir := p.dir
	link := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, to), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	link(p.file, "cacert.pem")
	serverCert, serverKey := p.serverCert(t)
	clientCert, clientKey := p.issue(t, "client", func(c *x509.Certificate) {
		c.Subject.OrganizationalUnit = []string{"my-service"}
		c.DNSNames = []string{"client.example.com"}
		u, _ := url.Parse("spiffe://example.com/client")
		c.URIs = []*url.URL{u}
	})
	for role, pair := range map[string][2]string{"server": {serverCert, serverKey}, "client": {clientCert, clientKey}} {
		link(pair[0], role+"-cert.pem")
		link(pair[1], role+"-key.pem")
		var combined []byte
		for _, f := range pair {
			b, _ := os.ReadFile(f)
			combined = append(combined, b...)
		}
		if err := os.WriteFile(filepath.Join(dir, role+"-combined.pem"), combined, 0o600); err != nil {
			t.Fatal(err)
		}
		// ghostunnel's README passes no --storepass for these.
		out, err := exec.Command(openssl, "pkcs12", "-export", "-in", pair[0], "-inkey", pair[1], "-certfile", p.file,
			"-out", filepath.Join(dir, role+"-keystore.p12"), "-passout", "pass:").CombinedOutput()
		if err != nil {
			t.Fatalf("openssl pkcs12: %v\n%s", err, out)
		}
	}
	out, err := exec.Command(openssl, "pkcs12", "-export", "-in", clientCert, "-inkey", clientKey, "-certfile", p.file,
		"-out", filepath.Join(dir, "client-secret.p12"), "-passout", "pass:secret").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl pkcs12: %v\n%s", err, out)
	}
	return dir
}

// ghostLine runs a ghostunnel command line with moat in its place: KEYS
// stands for the test-keys directory and {NAME} for ports from ports.
func ghostLine(t *testing.T, keys, line string, ports map[string]int) *process {
	t.Helper()
	for name, port := range ports {
		line = strings.ReplaceAll(line, "{"+name+"}", fmt.Sprint(port))
	}
	line = strings.ReplaceAll(line, "test-keys/", keys+"/")
	fields := strings.Fields(line)
	if fields[0] != "ghostunnel" {
		t.Fatalf("not a ghostunnel command line: %s", line)
	}
	return startMoat(t, fields[1:]...)
}

// socatLine is the docs' `nc -v localhost PORT`: a plaintext app talking
// through moat's client mode.
func socatLine(t *testing.T, port int) *process {
	t.Helper()
	return start(t, needTool(t, "socat"), "-", fmt.Sprintf("TCP:localhost:%d", port))
}

func ports(names ...string) map[string]int {
	m := map[string]int{}
	for _, n := range names {
		m[n] = freePortT()
	}
	return m
}

// freePortT is freePort without a test, for building port maps.
func freePortT() int {
	port, err := pickPort("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	return port
}

// freeWildcardPort is a port free on every address a moment ago.
func freeWildcardPort(t *testing.T) int {
	t.Helper()
	port, err := pickPort(":0")
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// upstreamAt serves upperEcho on addr.
func upstreamAt(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	serveUpstream(t, ln, upperEcho)
}

func TestGhostunnelCommandLines(t *testing.T) {
	keys := testKeys(t)
	openssl := needTool(t, "openssl")
	curl := needTool(t, "curl")

	t.Run("README server with a PKCS#12 keystore, openssl s_client", func(t *testing.T) {
		p := ports("TLS", "UP")
		upstreamAt(t, fmt.Sprintf("127.0.0.1:%d", p["UP"]))
		ghostLine(t, keys, "ghostunnel server --listen localhost:{TLS} --target localhost:{UP} --keystore test-keys/server-keystore.p12 --cacert test-keys/cacert.pem --allow-cn client", p)
		c := start(t, openssl, "s_client", "-connect", fmt.Sprintf("localhost:%d", p["TLS"]),
			"-cert", keys+"/client-combined.pem", "-key", keys+"/client-combined.pem", "-CAfile", keys+"/cacert.pem", "-quiet")
		fmt.Fprintln(c.stdin, "hello from the readme")
		c.waitFor(t, "HELLO FROM THE README", step)
	})

	t.Run("README client with a combined PEM keystore, openssl s_server and nc", func(t *testing.T) {
		srv, tlsAddr := startSServer(t, "-cert", keys+"/server-cert.pem", "-key", keys+"/server-key.pem",
			"-CAfile", keys+"/cacert.pem", "-Verify", "1", "-verify_return_error")
		p := ports("PLAIN")
		p["TLS"] = portOf(t, tlsAddr)
		ghostLine(t, keys, "ghostunnel client --listen localhost:{PLAIN} --target localhost:{TLS} --keystore test-keys/client-combined.pem --cacert test-keys/cacert.pem", p)
		app := socatLine(t, p["PLAIN"])
		fmt.Fprintln(app.stdin, "from-nc")
		srv.waitFor(t, "from-nc", step)
		srv.send(t, "from-s_server")
		app.waitFor(t, "from-s_server", step)
		srv.waitFor(t, "subject=O = moat tests, OU = my-service, CN = client", step) // s_server printed the client certificate it verified
	})

	t.Run("README full tunnel: server with combined PEM, client with PKCS#12", func(t *testing.T) {
		p := ports("UP", "TLS", "PLAIN")
		upstreamAt(t, fmt.Sprintf("127.0.0.1:%d", p["UP"]))
		ghostLine(t, keys, "ghostunnel server --listen localhost:{TLS} --target localhost:{UP} --keystore test-keys/server-combined.pem --cacert test-keys/cacert.pem --allow-cn client", p)
		ghostLine(t, keys, "ghostunnel client --listen localhost:{PLAIN} --target localhost:{TLS} --keystore test-keys/client-keystore.p12 --cacert test-keys/cacert.pem", p)
		app := socatLine(t, p["PLAIN"])
		fmt.Fprintln(app.stdin, "through the tunnel")
		app.waitFor(t, "THROUGH THE TUNNEL", step)
	})

	t.Run("quickstart: --cert/--key on both sides, curl through the tunnel", func(t *testing.T) {
		p := ports("TLS", "PLAIN")
		up := httpUpstream(t, []byte("quickstart body"))
		p["UP"] = portOf(t, up)
		ghostLine(t, keys, "ghostunnel server --listen localhost:{TLS} --target localhost:{UP} --cert test-keys/server-cert.pem --key test-keys/server-key.pem --cacert test-keys/cacert.pem --allow-cn client", p)
		ghostLine(t, keys, "ghostunnel client --listen localhost:{PLAIN} --target localhost:{TLS} --cert test-keys/client-cert.pem --key test-keys/client-key.pem --cacert test-keys/cacert.pem", p)
		out, err := exec.Command(curl, "-sS", "--max-time", "10", fmt.Sprintf("http://localhost:%d/blob", p["PLAIN"])).CombinedOutput()
		if err != nil || string(out) != "quickstart body" {
			t.Fatalf("curl through the tunnel: %v: %q", err, out)
		}
	})

	t.Run("metrics page: client with --status, curl /_status and /_metrics", func(t *testing.T) {
		p := ports("UP", "TLS", "PLAIN", "STATUS", "STATUS2")
		upstreamAt(t, fmt.Sprintf("127.0.0.1:%d", p["UP"]))
		ghostLine(t, keys, "ghostunnel server --listen localhost:{TLS} --target localhost:{UP} --keystore test-keys/server-keystore.p12 --cacert test-keys/cacert.pem --allow-cn client --status http://localhost:{STATUS2}", p)
		ghostLine(t, keys, "ghostunnel client --listen localhost:{PLAIN} --target localhost:{TLS} --keystore test-keys/client-keystore.p12 --cacert test-keys/cacert.pem --status localhost:{STATUS}", p)
		app := socatLine(t, p["PLAIN"])
		fmt.Fprintln(app.stdin, "count me")
		app.waitFor(t, "COUNT ME", step)
		for _, port := range []int{p["STATUS"], p["STATUS2"]} {
			base := fmt.Sprintf("http://localhost:%d", port)
			var st map[string]any
			if err := json.Unmarshal(curlGet(t, curl, base+"/_status", 200), &st); err != nil || st["ok"] != true || st["status"] != "ok" || st["backend_ok"] != true {
				t.Fatalf("/_status: %v %v", err, st)
			}
			var samples []map[string]any
			if err := json.Unmarshal(curlGet(t, curl, base+"/_metrics/json", 200), &samples); err != nil || len(samples) == 0 {
				t.Fatalf("/_metrics/json: %v, %d samples", err, len(samples))
			}
			if !hasSample(samples, "moat_connections_total", 1) || !hasSample(samples, "moat_fips140_enabled", 0) {
				t.Fatalf("/_metrics/json lacks moat_connections_total >= 1 or moat_fips140_enabled: %v", samples)
			}
			if err := json.Unmarshal(curlGet(t, curl, base+"/_metrics", 200), &samples); err != nil {
				t.Fatalf("/_metrics is not JSON: %v", err)
			}
			for _, path := range []string{"/_metrics/prometheus", "/_metrics?format=prometheus", "/metrics"} {
				if body := string(curlGet(t, curl, base+path, 200)); !strings.Contains(body, "# TYPE moat_connections_total counter") {
					t.Fatalf("%s is not Prometheus text:\n%.300s", path, body)
				}
			}
		}
	})

	t.Run("PROXY protocol page: --proxy-protocol and --allow-ou, written with =", func(t *testing.T) {
		headers := make(chan *ppHeader, 1)
		up := ppUpstream(t, headers)
		// The docs listen on every address: the port is picked free on
		// every address too, not only on loopback.
		p := map[string]int{"TLS": freeWildcardPort(t), "UP": portOf(t, up.addr())}
		ghostLine(t, keys, "ghostunnel server --listen=:{TLS} --target=localhost:{UP} --keystore=test-keys/server-keystore.p12 --cacert=test-keys/cacert.pem --allow-ou=my-service --proxy-protocol", p)
		c := start(t, openssl, "s_client", "-connect", fmt.Sprintf("127.0.0.1:%d", p["TLS"]), "-servername", "localhost",
			"-cert", keys+"/client-cert.pem", "-key", keys+"/client-key.pem", "-CAfile", keys+"/cacert.pem", "-quiet")
		fmt.Fprintln(c.stdin, "behind a proxy header")
		c.waitFor(t, "BEHIND A PROXY HEADER", step)
		select {
		case h := <-headers:
			if !h.src.Addr().IsLoopback() || h.src.Port() == 0 || h.dst.Port() != uint16(p["TLS"]) {
				t.Fatalf("PROXY header %v -> %v", h.src, h.dst)
			}
		case <-time.After(step):
			t.Fatal("the upstream got no PROXY header")
		}
	})

	t.Run("access-control page: --allow-uri-san, curl with a client certificate", func(t *testing.T) {
		p := ports("TLS")
		p["UP"] = portOf(t, httpUpstream(t, []byte("spiffe body")))
		ghostLine(t, keys, "ghostunnel server --listen localhost:{TLS} --target localhost:{UP} --cert test-keys/server-cert.pem --key test-keys/server-key.pem --cacert test-keys/cacert.pem --allow-uri-san spiffe://example.com/client", p)
		out, err := exec.Command(curl, "-sS", "--max-time", "10", "--cacert", keys+"/cacert.pem", "--cert", keys+"/client-cert.pem",
			"--key", keys+"/client-key.pem", fmt.Sprintf("https://localhost:%d/blob", p["TLS"])).CombinedOutput()
		if err != nil || string(out) != "spiffe body" {
			t.Fatalf("curl: %v: %q", err, out)
		}
	})

	t.Run("--unsafe-target to a non-local address, --allow-dns-san, --timed-reload, --max-conn-lifetime, gnutls-cli", func(t *testing.T) {
		gnutls := needTool(t, "gnutls-cli")
		host := nonLoopbackIPv4(t)
		p := ports("TLS", "UP")
		upstreamAt(t, fmt.Sprintf("%s:%d", host, p["UP"]))
		line := "ghostunnel server --listen localhost:{TLS} --target " + host + ":{UP} --keystore test-keys/server-combined.pem --cacert test-keys/cacert.pem --allow-dns-san client.example.com --timed-reload 300s --max-conn-lifetime 1h"
		refused := exec.Command(moatBin, strings.Fields(strings.NewReplacer("{TLS}", fmt.Sprint(p["TLS"]), "{UP}", fmt.Sprint(p["UP"]), "test-keys/", keys+"/").Replace(line))[1:]...)
		out, err := refused.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "Add --unsafe-target to allow it") {
			t.Fatalf("without --unsafe-target: %v\n%s", err, out)
		}
		ghostLine(t, keys, line+" --unsafe-target", p)
		c := start(t, gnutls, "--x509cafile", keys+"/cacert.pem", "--x509certfile", keys+"/client-cert.pem",
			"--x509keyfile", keys+"/client-key.pem", "-p", fmt.Sprint(p["TLS"]), "localhost")
		c.waitFor(t, "Handshake was completed", step)
		fmt.Fprintln(c.stdin, "across the network")
		c.waitFor(t, "ACROSS THE NETWORK", step)
	})

	t.Run("client --disable-authentication against a server that asks for nothing", func(t *testing.T) {
		srv, tlsAddr := startSServer(t, "-cert", keys+"/server-cert.pem", "-key", keys+"/server-key.pem")
		p := ports("PLAIN")
		p["TLS"] = portOf(t, tlsAddr)
		ghostLine(t, keys, "ghostunnel client --listen localhost:{PLAIN} --target localhost:{TLS} --cacert test-keys/cacert.pem --disable-authentication", p)
		app := socatLine(t, p["PLAIN"])
		fmt.Fprintln(app.stdin, "anonymous")
		srv.waitFor(t, "anonymous", step)
	})

	t.Run("client with a password-protected PKCS#12 keystore and --storepass", func(t *testing.T) {
		srv, tlsAddr := startSServer(t, "-cert", keys+"/server-cert.pem", "-key", keys+"/server-key.pem",
			"-CAfile", keys+"/cacert.pem", "-Verify", "1", "-verify_return_error")
		p := ports("PLAIN")
		p["TLS"] = portOf(t, tlsAddr)
		ghostLine(t, keys, "ghostunnel client --listen localhost:{PLAIN} --target localhost:{TLS} --keystore test-keys/client-secret.p12 --storepass secret --cacert test-keys/cacert.pem", p)
		app := socatLine(t, p["PLAIN"])
		fmt.Fprintln(app.stdin, "with a password")
		srv.waitFor(t, "with a password", step)
	})
}

// TestGhostunnelFlagsMoatLacksSayWhy: a ghostunnel line with a flag moat
// deliberately lacks stops with exit code 2 and one line saying why, not
// "unknown flag".
func TestGhostunnelFlagsMoatLacksSayWhy(t *testing.T) {
	keys := testKeys(t)
	for _, line := range []string{
		"server --listen localhost:8443 --target localhost:8080 --keychain-identity serverCN --cacert test-keys/cacert.pem --allow-cn client",
		"server --listen localhost:8443 --target localhost:8080 --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --pkcs11-token-label ghostunnel --pkcs11-pin 1234 --cert test-keys/server-cert.pem --allow-cn client",
		"server --listen :443 --target localhost:8080 --auto-acme-cert example.com --auto-acme-email admin@example.com --auto-acme-agree-to-tos --allow-all",
		"client --listen localhost:8080 --target example.com:443 --proxy socks5://localhost:1080 --disable-authentication",
		"server --listen localhost:8443 --target localhost:8080 --keystore test-keys/server-combined.pem --allow-all --enable-shutdown --status localhost:6060",
	} {
		args := strings.Fields(strings.ReplaceAll(line, "test-keys/", keys+"/"))
		out, err := exec.Command(moatBin, args...).CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		text := strings.TrimSpace(string(out))
		if !ok || ee.ExitCode() != 2 || strings.Count(text, "\n") != 0 || !strings.Contains(text, "moat does not support this ghostunnel flag") || strings.Contains(text, "unknown flag") {
			t.Errorf("moat %s: %v\n%s", line, err, text)
		}
	}
}

// curlGet fetches url with curl and checks the status code.
func curlGet(t *testing.T, curl, url string, code int) []byte {
	t.Helper()
	out, err := exec.Command(curl, "-sS", "--max-time", "10", "-w", "\n%{http_code}", url).Output()
	if err != nil {
		t.Fatalf("curl %s: %v", url, err)
	}
	body, status, _ := strings.Cut(string(out), "\n"+fmt.Sprint(code))
	if status != "" || !strings.HasSuffix(string(out), "\n"+fmt.Sprint(code)) {
		t.Fatalf("curl %s: want status %d, got %q", url, code, out)
	}
	return []byte(body)
}

func hasSample(samples []map[string]any, name string, atLeast float64) bool {
	for _, s := range samples {
		if v, ok := s["value"].(float64); s["metric"] == name && ok && v >= atLeast {
			return true
		}
	}
	return false
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscan(port, &n)
	return n
}

// nonLoopbackIPv4 is an address of this host that is not loopback: a
// target moat must refuse unless told --unsafe-target.
func nonLoopbackIPv4(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			return ipn.IP.String()
		}
	}
	t.Fatal("this host has no non-loopback IPv4 address to use as a non-local target")
	return ""
}
