package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The SPIFFE Workload API tests run a real SPIRE server and agent on
// 127.0.0.1. scripts/spire-build.sh builds them into the cache directory
// below (about 12 minutes the first time); MOAT_SPIRE_BIN_DIR points
// elsewhere.
const spireVersion = "v1.13.3"

// spireTD is the trust domain of the test's SPIRE server.
const spireTD = "moat.test"

// spireSVIDTTL is the X.509-SVID lifetime of every workload entry, in
// seconds. SPIRE accepts any positive TTL, but its agent renews an SVID
// only once less than half of its lifetime is left (NotBefore is backdated
// by 10s), checking every 5s, so an SVID much shorter than that sync
// would be served expired. With 40s moat receives a new SVID every 15 to
// 20 seconds, and the one in service always has more than 15s left: the
// test sees real rotations, and survives a stopped agent on a loaded
// machine.
const spireSVIDTTL = 40

// spireBins returns the paths of spire-server and spire-agent. When they
// are missing the test fails in CI (.ci/run builds them) and is skipped,
// loudly, elsewhere.
func spireBins(t testing.TB) (server, agent string) {
	t.Helper()
	dir := os.Getenv("MOAT_SPIRE_BIN_DIR")
	if dir == "" {
		cache := os.Getenv("XDG_CACHE_HOME")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				t.Fatal(err)
			}
			cache = filepath.Join(home, ".cache")
		}
		dir = filepath.Join(cache, "moat-ci", "spire-"+spireVersion, "bin")
	}
	server, agent = filepath.Join(dir, "spire-server"), filepath.Join(dir, "spire-agent")
	for _, p := range []string{server, agent} {
		if _, err := os.Stat(p); err != nil {
			msg := fmt.Sprintf("SPIRE %s is not built (%v): run scripts/spire-build.sh to build spire-server and spire-agent into %s, or set MOAT_SPIRE_BIN_DIR", spireVersion, err, dir)
			if os.Getenv("CI") != "" {
				t.Fatal(msg)
			}
			t.Skip("SKIPPING the SPIFFE Workload API tests against real SPIRE: " + msg)
		}
	}
	return server, agent
}

// spire is a SPIRE server and agent run by the test.
type spire struct {
	dir                 string
	serverBin, agentBin string
	serverSock          string
	agentSock           string // the Workload API
	agentConf           string
	agent               *process
	// upstream is the CA SPIRE's own CA is signed by (UpstreamAuthority
	// "disk"): the root of the trust bundle, and an issuer of CRLs.
	upstream             *opensslCA
	serverPort, nodeName string
}

func startSPIRE(t *testing.T) *spire {
	t.Helper()
	serverBin, agentBin := spireBins(t)
	// Unix socket paths are limited to 108 bytes: keep the directory short.
	dir, err := os.MkdirTemp("", "moat-spire-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &spire{
		dir: dir, serverBin: serverBin, agentBin: agentBin,
		serverSock: filepath.Join(dir, "server.sock"), agentSock: filepath.Join(dir, "agent.sock"),
		serverPort: strconv.Itoa(freePort(t)),
	}
	for _, d := range []string{"server-data", "agent-data"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	s.upstream = newOpenSSLCA(t)
	serverConf := filepath.Join(dir, "server.conf")
	writeFile(t, serverConf, fmt.Sprintf(`server {
    bind_address = "127.0.0.1"
    bind_port = "%s"
    socket_path = "%s"
    trust_domain = "%s"
    data_dir = "%s/server-data"
    log_level = "INFO"
}
plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = "%s/server-data/datastore.sqlite3"
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "memory" {
        plugin_data {}
    }
    UpstreamAuthority "disk" {
        plugin_data {
            cert_file_path = "%s"
            key_file_path = "%s"
        }
    }
}
`, s.serverPort, s.serverSock, spireTD, dir, dir, s.upstream.crt, s.upstream.key))
	start(t, serverBin, "run", "-config", serverConf)
	s.waitHealthy(t, serverBin, s.serverSock)

	s.nodeName = "spiffe://" + spireTD + "/node"
	out := s.serverCmd(t, "token", "generate", "-spiffeID", s.nodeName)
	m := regexp.MustCompile(`Token: (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("spire-server token generate printed %q", out)
	}

	// A disk key manager lets a restarted agent reuse its own SVID: the
	// join token is good for one attestation only.
	s.agentConf = filepath.Join(dir, "agent.conf")
	writeFile(t, s.agentConf, fmt.Sprintf(`agent {
    data_dir = "%s/agent-data"
    log_level = "INFO"
    server_address = "127.0.0.1"
    server_port = "%s"
    socket_path = "%s"
    trust_domain = "%s"
    insecure_bootstrap = true
}
plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "disk" {
        plugin_data {
            directory = "%s/agent-data"
        }
    }
    WorkloadAttestor "unix" {
        plugin_data {
            discover_workload_path = true
        }
    }
}
`, dir, s.serverPort, s.agentSock, spireTD, dir))
	s.agent = start(t, agentBin, "run", "-config", s.agentConf, "-joinToken", m[1])
	s.waitHealthy(t, agentBin, s.agentSock)
	return s
}

// restartAgent starts the agent again after it was killed.
func (s *spire) restartAgent(t *testing.T) {
	t.Helper()
	s.agent = start(t, s.agentBin, "run", "-config", s.agentConf)
	s.waitHealthy(t, s.agentBin, s.agentSock)
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// waitHealthy polls `bin healthcheck` until it passes.
func (s *spire) waitHealthy(t testing.TB, bin, sock string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, err := exec.Command(bin, "healthcheck", "-socketPath", sock).CombinedOutput()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s healthcheck did not pass within 90s: %v %s", filepath.Base(bin), err, out)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (s *spire) serverCmd(t testing.TB, args ...string) string {
	t.Helper()
	args = append(args, "-socketPath", s.serverSock)
	out, err := exec.Command(s.serverBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("spire-server %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// register creates a workload entry for processes of this uid running the
// executable at exe, so each copy of moat gets its own SPIFFE ID.
func (s *spire) register(t testing.TB, id, exe string, dns ...string) {
	t.Helper()
	args := []string{"entry", "create", "-parentID", s.nodeName, "-spiffeID", id,
		"-selector", "unix:uid:" + strconv.Itoa(os.Getuid()), "-selector", "unix:path:" + exe,
		"-x509SVIDTTL", strconv.Itoa(spireSVIDTTL)}
	for _, d := range dns {
		args = append(args, "-dns", d)
	}
	s.serverCmd(t, args...)
}

// moatCopy copies the moat binary to dir/name/moat: the unix workload
// attestor tells workloads apart by executable path.
func moatCopy(t testing.TB, dir, name string) string {
	t.Helper()
	src, err := os.ReadFile(moatBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name, "moat")
	if err := os.WriteFile(p, src, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// httpGet returns the status and body of a status-port URL (0 and the error
// when it cannot be fetched).
func httpGet(url string) (int, string) {
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// waitReadyz polls /readyz until it answers code with a body containing
// body.
func waitReadyz(t testing.TB, status string, code int, body string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		c, b := httpGet("http://" + status + "/readyz")
		if c == code && strings.Contains(b, body) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz answered %d %q, want %d %q", c, b, code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// servedLeaf returns the certificate a TLS server at addr presents to a
// new handshake. The client has no certificate, so an mTLS server refuses
// it afterwards; the certificate is seen before that.
func servedLeaf(t testing.TB, addr string) *x509.Certificate {
	t.Helper()
	return servedChain(t, addr)[0]
}

// servedChain is the chain a handshake with addr presents, leaf first.
func servedChain(t testing.TB, addr string) []*x509.Certificate {
	t.Helper()
	var chain []*x509.Certificate
	cfg := &tls.Config{InsecureSkipVerify: true, VerifyConnection: func(cs tls.ConnectionState) error {
		chain = cs.PeerCertificates
		return nil
	}}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err == nil {
		c.Close()
	}
	if len(chain) == 0 {
		t.Fatalf("no certificate from %s: %v", addr, err)
	}
	return chain
}

// metricValue reads one unlabelled sample from /metrics.
func metricValue(t testing.TB, status, name string) float64 {
	t.Helper()
	_, body := httpGet("http://" + status + "/metrics")
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in /metrics", name)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// svidSerials returns the serials moat logged for the SVIDs it took into
// service, in order.
func svidSerials(p *process) []string {
	var out []string
	re := regexp.MustCompile(`"serial":"([0-9a-f]+)"`)
	for _, line := range strings.Split(p.output(), "\n") {
		if strings.Contains(line, "SVID from the Workload API in service") {
			if m := re.FindStringSubmatch(line); m != nil {
				out = append(out, m[1])
			}
		}
	}
	return out
}

func TestWorkloadAPIWithSPIRE(t *testing.T) {
	s := startSPIRE(t)
	serverExe, clientExe, intruderExe := moatCopy(t, s.dir, "server"), moatCopy(t, s.dir, "client"), moatCopy(t, s.dir, "intruder")
	serverID, clientID, intruderID := "spiffe://"+spireTD+"/server", "spiffe://"+spireTD+"/client", "spiffe://"+spireTD+"/intruder"
	upstream := startUpstream(t, upperEcho)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	status := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	wl := "unix://" + s.agentSock

	// Started before SPIRE knows it: moat waits, and says why on /readyz.
	server := start(t, serverExe, "server", "--listen", addr, "--target", upstream.addr(), "--status", status,
		"--use-workload-api-addr", wl, "--use-workload-api-timeout", "3m", "--allow-uri", clientID)
	server.waitFor(t, "waiting for an SVID from the Workload API", 30*time.Second)
	waitReadyz(t, status, http.StatusServiceUnavailable, "waiting for an SVID from the Workload API", 30*time.Second)
	if c, _ := httpGet("http://" + status + "/readyz"); c != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before the first SVID: %d", c)
	}

	s.register(t, serverID, serverExe, "localhost")
	s.register(t, clientID, clientExe)
	s.register(t, intruderID, intruderExe)
	server.waitFor(t, "moat is listening", 2*time.Minute)
	waitReadyz(t, status, http.StatusOK, "ready", 30*time.Second)
	first := servedLeaf(t, addr)
	if len(first.URIs) != 1 || first.URIs[0].String() != serverID {
		t.Fatalf("server certificate names %v, want %s", first.URIs, serverID)
	}
	if got := metricValue(t, status, "moat_certificate_expiry_timestamp_seconds"); int64(got) != first.NotAfter.Unix() {
		t.Errorf("moat_certificate_expiry_timestamp_seconds = %v, want %d", got, first.NotAfter.Unix())
	}

	// moat client takes its SVID from the same agent; the server's SVID
	// is verified against the Workload API's bundle and for localhost.
	clientListen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	client := start(t, clientExe, "client", "--listen", clientListen, "--target", addr, "--server-name", "localhost",
		"--use-workload-api-addr", wl)
	client.waitFor(t, "moat is listening", 2*time.Minute)
	held := dialRetry(t, "tcp", clientListen)
	defer held.Close()
	// Passing proves the client presented its SVID: the server admits
	// only clientID.
	echoLine(t, held, "round trip over SVIDs\n")

	// A workload with another SPIFFE ID of the same trust domain is
	// refused by --allow-uri.
	intruderListen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	intruder := start(t, intruderExe, "client", "--listen", intruderListen, "--target", addr, "--server-name", "localhost",
		"--use-workload-api-addr", wl)
	intruder.waitFor(t, "moat is listening", 2*time.Minute)
	ic := dialRetry(t, "tcp", intruderListen)
	ic.Write([]byte("let me in\n"))
	ic.SetReadDeadline(time.Now().Add(15 * time.Second))
	if b, err := io.ReadAll(ic); len(b) > 0 || isTimeout(err) {
		t.Fatalf("intruder read %q, %v: want the connection closed without data", b, err)
	}
	ic.Close()
	server.waitFor(t, `"auth_refused":"not-allowed"`, 10*time.Second)
	server.waitFor(t, intruderID, 10*time.Second)

	// --verify-uri names the server by its SPIFFE ID: the identity check
	// replaces the host name check (the target is an IP address the SVID
	// does not carry), and a server with another ID is refused.
	pinnedListen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	pinned := start(t, clientExe, "client", "--listen", pinnedListen, "--target", addr,
		"--use-workload-api-addr", wl, "--verify-uri", serverID)
	pinned.waitFor(t, "moat is listening", 2*time.Minute)
	pc := dialRetry(t, "tcp", pinnedListen)
	echoLine(t, pc, "to the server named by its SPIFFE ID\n")
	pc.Close()
	wrongListen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	wrong := start(t, clientExe, "client", "--listen", wrongListen, "--target", addr,
		"--use-workload-api-addr", wl, "--verify-uri", "spiffe://"+spireTD+"/someone-else")
	wrong.waitFor(t, "moat is listening", 2*time.Minute)
	wc := dialRetry(t, "tcp", wrongListen)
	wc.Write([]byte("hello?\n"))
	wc.SetReadDeadline(time.Now().Add(15 * time.Second))
	if b, err := io.ReadAll(wc); len(b) > 0 || isTimeout(err) {
		t.Fatalf("client with the wrong --verify-uri read %q, %v: want the connection closed without data", b, err)
	}
	wc.Close()
	wrong.waitFor(t, `"auth_refused":"not-allowed"`, 10*time.Second)
	wrong.waitFor(t, serverID, 10*time.Second)

	// The agent rotates the SVIDs: new handshakes show the new serial
	// without a restart, the connection opened before goes on, and a new
	// connection through moat client (with its own rotated SVID) passes.
	rotated := waitNewLeaf(t, addr, first.SerialNumber, 2*time.Minute)
	if rotated.URIs[0].String() != serverID {
		t.Fatalf("rotated certificate names %v", rotated.URIs)
	}
	server.waitFor(t, `"serial":"`+rotated.SerialNumber.Text(16)+`"`, 10*time.Second)
	if got := metricValue(t, status, "moat_certificate_expiry_timestamp_seconds"); int64(got) < rotated.NotAfter.Unix() {
		t.Errorf("moat_certificate_expiry_timestamp_seconds = %v after rotation, want >= %d", got, rotated.NotAfter.Unix())
	}
	waitCountWithin(t, client, "SVID from the Workload API in service", 2, 2*time.Minute)
	echoLine(t, held, "the connection from before the rotation\n")
	fresh := dialRetry(t, "tcp", clientListen)
	echoLine(t, fresh, "a connection after the rotation\n")
	fresh.Close()
	if n := len(svidSerials(server)); n < 2 {
		t.Fatalf("server logged %d SVIDs, want at least 2", n)
	}

	// The agent goes away: moat logs it once and keeps serving the last
	// SVID; when the agent is back, the next SVID arrives by itself.
	s.agent.cmd.Process.Kill()
	<-s.agent.done
	server.waitFor(t, "lost the Workload API", 30*time.Second)
	lastBefore := servedLeaf(t, addr)
	c := dialRetry(t, "tcp", clientListen)
	echoLine(t, c, "while the agent is away\n")
	c.Close()
	time.Sleep(3 * time.Second) // several reconnect attempts
	if n := server.count("lost the Workload API"); n != 1 {
		t.Fatalf("server logged the lost agent %d times, want once", n)
	}
	waitReadyz(t, status, http.StatusOK, "ready", 10*time.Second)
	clientSVIDs := client.count("SVID from the Workload API in service")
	s.restartAgent(t)
	waitNewLeaf(t, addr, lastBefore.SerialNumber, 2*time.Minute)
	waitCountWithin(t, client, "SVID from the Workload API in service", clientSVIDs+1, 2*time.Minute)
	c = dialRetry(t, "tcp", clientListen)
	echoLine(t, c, "after the agent came back\n")
	c.Close()

	// --crl with the Workload API: the CRLs are verified against the
	// bundle the agent sends (the upstream root), not a --cacert file. A
	// CRL that lists nothing lets the server through; one that lists
	// SPIRE's intermediate CA refuses every SVID under it.
	chain := servedChain(t, addr)
	if len(chain) < 2 {
		t.Fatalf("the server's SVID chain has %d certificates, want SPIRE's intermediate after the leaf", len(chain))
	}
	inter := filepath.Join(s.dir, "spire-intermediate.crt")
	writePEM(t, inter, "CERTIFICATE", chain[1].Raw)
	emptyCRL, revokedCRL := filepath.Join(s.dir, "empty.crl"), filepath.Join(s.dir, "revoked.crl")
	s.upstream.gencrl(t, emptyCRL)
	s.upstream.revoke(t, inter)
	s.upstream.gencrl(t, revokedCRL)
	for _, tc := range []struct {
		crl    string
		passes bool
	}{{emptyCRL, true}, {revokedCRL, false}} {
		listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		p := start(t, clientExe, "client", "--listen", listen, "--target", addr,
			"--use-workload-api-addr", wl, "--verify-uri", serverID, "--crl", tc.crl)
		p.waitFor(t, "moat is listening", 2*time.Minute)
		c := dialRetry(t, "tcp", listen)
		if tc.passes {
			echoLine(t, c, "past a CRL verified against the Workload API bundle\n")
		} else {
			c.Write([]byte("hello?\n"))
			c.SetReadDeadline(time.Now().Add(15 * time.Second))
			if b, err := io.ReadAll(c); len(b) > 0 || isTimeout(err) {
				t.Fatalf("through a CRL listing SPIRE's intermediate: read %q, %v; want the connection closed without data", b, err)
			}
			p.waitFor(t, `"auth_refused":"revoked"`, 10*time.Second)
		}
		c.Close()
	}
}

// waitNewLeaf polls new handshakes until the server presents a
// certificate whose serial is not old.
func waitNewLeaf(t testing.TB, addr string, old *big.Int, d time.Duration) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		leaf := servedLeaf(t, addr)
		if leaf.SerialNumber.Cmp(old) != 0 {
			return leaf
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server still presents serial %x after %s", old, d)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// Bad input needs no SPIRE: an address nothing listens on, and flags that
// name two certificate sources.
func TestWorkloadAPIBadInput(t *testing.T) {
	dir, err := os.MkdirTemp("", "moat-wl-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	absent := "unix://" + filepath.Join(dir, "absent.sock")
	// Console logs: a fatal error is then the one line "moat: ...".
	base := []string{"--log-format", "console", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:9", "--allow-uri", "spiffe://td/x"}

	t.Run("unreachable at start", func(t *testing.T) {
		status := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		p := start(t, moatBin, append([]string{"server", "--use-workload-api-addr", absent,
			"--use-workload-api-timeout", "4s", "--status", status}, base...)...)
		// The status port serves while moat waits, and says why it is not
		// ready.
		waitReadyz(t, status, http.StatusServiceUnavailable, "waiting for an SVID from the Workload API", 10*time.Second)
		select {
		case <-p.done:
		case <-time.After(60 * time.Second):
			t.Fatal("moat did not give up after --use-workload-api-timeout")
		}
		if p.cmd.ProcessState.ExitCode() == 0 {
			t.Fatal("moat exited 0 without an SVID")
		}
		last := lastLine(p.output())
		if !strings.HasPrefix(last, "moat: ") || !strings.Contains(last, absent) || !strings.Contains(last, "within 4s") {
			t.Fatalf("last line %q: want one line naming %s", last, absent)
		}
	})

	t.Run("address from SPIFFE_ENDPOINT_SOCKET", func(t *testing.T) {
		cmd := exec.Command(moatBin, "client", "--use-workload-api", "--use-workload-api-timeout", "1s",
			"--listen", "127.0.0.1:0", "--target", "127.0.0.1:9")
		cmd.Env = append(os.Environ(), "SPIFFE_ENDPOINT_SOCKET="+absent)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(lastLine(string(out)), absent) {
			t.Fatalf("%v: %s", err, out)
		}
		cmd = exec.Command(moatBin, "client", "--use-workload-api", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:9")
		cmd.Env = append(os.Environ(), "SPIFFE_ENDPOINT_SOCKET=")
		out, _ = cmd.CombinedOutput()
		if !strings.Contains(string(out), "--use-workload-api: SPIFFE_ENDPOINT_SOCKET is not set") {
			t.Fatalf("without SPIFFE_ENDPOINT_SOCKET: %s", out)
		}
	})

	combined := "moat: --use-workload-api-addr: cannot be combined with "
	for _, tc := range []struct {
		mode  string
		extra []string
		flag  string
		want  string
	}{
		{"server", []string{"--cert", "x.crt", "--key", "x.key"}, "--cert", combined + "--cert"},
		{"server", []string{"--cert-dir", dir}, "--cert-dir", combined + "--cert-dir"},
		{"server", []string{"--self-signed"}, "--self-signed", combined + "--self-signed"},
		{"server", []string{"--cacert", "ca.crt"}, "--cacert", combined + "--cacert"},
		{"client", []string{"--cert", "x.crt", "--key", "x.key"}, "--cert", combined + "--cert"},
		{"client", []string{"--cacert", "ca.crt"}, "--cacert", combined + "--cacert"},
		// --crl is read at start even though the bundle that verifies it
		// comes later: a missing file stops moat at once.
		{"client", []string{"--crl", "x.crl"}, "--crl", "moat: --crl: CRL x.crl"},
		{"server", []string{"--crl", "x.crl"}, "--crl", "moat: --crl: CRL x.crl"},
	} {
		t.Run(tc.mode+" with "+tc.flag, func(t *testing.T) {
			args := append([]string{tc.mode, "--use-workload-api-addr", absent}, tc.extra...)
			if tc.mode == "server" {
				args = append(args, base...)
			} else {
				args = append(args, "--log-format", "console", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:9")
			}
			out, err := exec.Command(moatBin, args...).CombinedOutput()
			// Conflicting sources are refused before the agent is dialled:
			// the fatal line is all there is. A --crl file is read once the
			// source is set up, after its "waiting" line.
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if tc.flag != "--crl" && len(lines) != 1 {
				t.Fatalf("%v: %q, want one line", err, out)
			}
			if err == nil || !strings.HasPrefix(lines[len(lines)-1], tc.want) {
				t.Fatalf("%v: %q, want the last line to begin %q", err, out, tc.want)
			}
		})
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// waitCountWithin waits up to d for s to appear n times in p's log: an
// SVID rotation takes a good part of its TTL.
func waitCountWithin(t testing.TB, p *process, s string, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for p.count(s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%q seen %d times within %s, want %d", s, p.count(s), d, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
