package tlsstate

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// keyUpdateRecordLen is a TLS 1.3 KeyUpdate as sent: a 5-byte record header,
// the 5-byte message, the inner content type and a 16-byte AEAD tag.
const keyUpdateRecordLen = 5 + 5 + 1 + 16

// TestServerAnswersKeyUpdateOnReadPath: OpenSSL's KeyUpdate with
// update_requested reaches the engine while the server only reads; the
// answer is produced by Read and flushed, and data afterwards decrypts on
// both sides under the new keys. Without update_requested nothing is produced.
func TestServerAnswersKeyUpdateOnReadPath(t *testing.T) {
	p := testPKI(t)
	srvCfg, _ := p.configs(tls.VersionTLS13, p.small, false)
	proc, conn := acceptClient(t, "-tls1_3", "-msg", "-servername", "localhost")
	sp := newPeer(t, conn, Server(srvCfg, Options{}))
	sp.handshake()
	sp.waitFor(proc, `Verify return code`)

	raw := sp.raw
	proc.send("k")
	sp.waitFor(proc, `>>> TLS 1.3, Handshake \[length 0005\], KeyUpdate`)
	sp.until("s_client's KeyUpdate", func() bool { return sp.raw >= raw+keyUpdateRecordLen })
	sp.poll(0)
	if sp.readOut != 0 || sp.err != nil {
		t.Fatalf("KeyUpdate without update_requested: Read produced %d bytes, err=%v; want 0", sp.readOut, sp.err)
	}

	proc.send("K")
	sp.until("the KeyUpdate answer", func() bool { return sp.readOut > 0 || sp.err != nil })
	if sp.readOut != keyUpdateRecordLen || sp.err != nil {
		t.Fatalf("Read produced %d bytes (err=%v), want one %d-byte KeyUpdate", sp.readOut, sp.err, keyUpdateRecordLen)
	}
	sp.waitFor(proc, `<<< TLS 1.3, Handshake \[length 0005\], KeyUpdate`)
	sp.write("moat-after-keyupdate\n")
	sp.waitFor(proc, `\nmoat-after-keyupdate`)
	proc.send("s_client-after-keyupdate")
	sp.until("data from s_client", func() bool { return strings.Contains(string(sp.plain), "s_client-after-keyupdate\n") })
}

// TestClientAnswersServerKeyUpdate is the mirror case: the engine as client
// answers s_server's KeyUpdate on its read path.
func TestClientAnswersServerKeyUpdate(t *testing.T) {
	p := testPKI(t)
	_, cliCfg := p.configs(tls.VersionTLS13, p.small, false)
	files, err := p.small.WritePEM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	proc, conn := dialServer(t, "-tls1_3", "-msg", "-cert", files.Cert, "-key", files.Key)
	cp := newPeer(t, conn, Client(cliCfg, Options{}))
	cp.handshake()
	cp.waitFor(proc, `CIPHER is`)

	proc.send("K")
	cp.until("the KeyUpdate answer", func() bool { return cp.readOut > 0 || cp.err != nil })
	if cp.readOut != keyUpdateRecordLen || cp.err != nil {
		t.Fatalf("Read produced %d bytes (err=%v), want one %d-byte KeyUpdate", cp.readOut, cp.err, keyUpdateRecordLen)
	}
	cp.waitFor(proc, `<<< TLS 1.3, Handshake \[length 0005\], KeyUpdate`)
	cp.write("moat-client-after-keyupdate\n")
	cp.waitFor(proc, `\nmoat-client-after-keyupdate`)
	proc.send("s_server-after-keyupdate")
	cp.until("data from s_server", func() bool { return strings.Contains(string(cp.plain), "s_server-after-keyupdate\n") })
}

// TestClientRenegotiatesWithOpenSSLServer: a TLS 1.2 client engine follows
// s_server's HelloRequest ('r'), and its request for a client certificate
// at renegotiation ('R'), as its tls.Config's Renegotiation allows.
func TestClientRenegotiatesWithOpenSSLServer(t *testing.T) {
	cases := []struct {
		name       string
		policy     tls.RenegotiationSupport
		cmds       []string
		handshakes int  // after all commands
		refused    bool // the last command is refused (IsRenegotiationRefused)
	}{
		{"r/OnceAsClient", tls.RenegotiateOnceAsClient, []string{"r"}, 2, false},
		{"R/OnceAsClient/ClientCertAtRenegotiation", tls.RenegotiateOnceAsClient, []string{"R"}, 2, false},
		{"rr/FreelyAsClient", tls.RenegotiateFreelyAsClient, []string{"r", "r"}, 3, false},
		{"rr/OnceAsClient", tls.RenegotiateOnceAsClient, []string{"r", "r"}, 2, true},
		{"r/Never", tls.RenegotiateNever, []string{"r"}, 1, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			testRenegotiation(t, tc.policy, tc.cmds, tc.handshakes, tc.refused)
		})
	}
}

func testRenegotiation(t *testing.T, policy tls.RenegotiationSupport, cmds []string, handshakes int, refused bool) {
	p := testPKI(t)
	_, cliCfg := p.configs(tls.VersionTLS12, p.small, false)
	cliCfg.Renegotiation = policy
	var certRequests atomic.Int32
	clientCert := p.client.TLS()
	cliCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		certRequests.Add(1)
		return &clientCert, nil
	}
	dir := t.TempDir()
	files, err := p.small.WritePEM(dir)
	if err != nil {
		t.Fatal(err)
	}
	clientFiles, err := p.client.WritePEM(dir)
	if err != nil {
		t.Fatal(err)
	}
	proc, conn := dialServer(t, "-tls1_2", "-msg", "-cert", files.Cert, "-key", files.Key, "-CAfile", clientFiles.CA)
	cp := newPeer(t, conn, Client(cliCfg, Options{}))
	cp.handshake()
	cp.waitFor(proc, `CIPHER is`)

	for i, cmd := range cmds {
		proc.send(cmd)
		if i == len(cmds)-1 && refused {
			cp.until("the refusal", func() bool { return cp.err != nil })
			if cp.e.State() != Failed || !IsRenegotiationRefused(cp.err) {
				t.Fatalf("state=%v err=%v, want Failed with a renegotiation refused by policy", cp.e.State(), cp.err)
			}
			cp.waitFor(proc, `<<< TLS 1.2, Alert \[length 0002\], warning no_renegotiation`)
			break
		}
		sawRenegotiating := false
		cp.until("renegotiation", func() bool {
			if cp.e.State() == Renegotiating {
				// The HelloRequest arrives alone, so the engine stays here
				// until the server answers our ClientHello: Write must wait.
				sawRenegotiating = true
				if n, err := cp.e.Write([]byte("too early")); n != 0 || err != ErrWantRead {
					t.Fatalf("Write while renegotiating = %d, %v; want ErrWantRead", n, err)
				}
			}
			return cp.e.Handshakes() == i+2 || cp.err != nil
		})
		if cp.err != nil || cp.e.State() != Open || !sawRenegotiating {
			t.Fatalf("renegotiation %d: state=%v err=%v, Renegotiating seen: %v", i+1, cp.e.State(), cp.err, sawRenegotiating)
		}
		if cp.readOut == 0 {
			t.Fatal("renegotiation flight not produced on the read path")
		}
		if cmd == "R" {
			cp.waitFor(proc, `(?s)>>> TLS 1.2, Handshake \[length [0-9a-f]+\], CertificateRequest.*<<< TLS 1.2, Handshake \[length [0-9a-f]+\], Certificate\b`)
		}
		exchange(t, cp, proc, fmt.Sprintf("after-renegotiation-%d", i+1))
	}
	if got := cp.e.Handshakes(); got != handshakes {
		t.Fatalf("Handshakes() = %d, want %d", got, handshakes)
	}
	wantCert := int32(0)
	if cmds[0] == "R" {
		wantCert = 1 // at the renegotiation only
	}
	if got := certRequests.Load(); got != wantCert {
		t.Fatalf("client certificate requested %d times, want %d", got, wantCert)
	}
}

// exchange sends a line each way between an engine and an openssl peer.
func exchange(t *testing.T, ep *peer, proc *opensslProc, tag string) {
	t.Helper()
	ep.write("moat-" + tag + "\n")
	ep.waitFor(proc, `\nmoat-`+tag+`\n`)
	proc.send("openssl-" + tag)
	ep.until("data from openssl", func() bool { return strings.Contains(string(ep.plain), "openssl-"+tag+"\n") })
}

// TestServerRejectsClientInitiatedRenegotiation: s_client's renegotiation
// ('R') makes the server engine's Read fail with a fatal unexpected_message
// alert, produced on the read path and flushed to the peer. Another
// connection is unaffected.
func TestServerRejectsClientInitiatedRenegotiation(t *testing.T) {
	p := testPKI(t)
	srvCfg, _ := p.configs(tls.VersionTLS12, p.small, false)
	var procs [2]*opensslProc
	var peers [2]*peer
	for i := range peers {
		proc, conn := acceptClient(t, "-tls1_2", "-msg", "-servername", "localhost")
		procs[i], peers[i] = proc, newPeer(t, conn, Server(srvCfg, Options{}))
		peers[i].handshake()
		peers[i].waitFor(proc, `Verify return code`)
	}
	victim, other := peers[0], peers[1]

	procs[0].send("R")
	victim.until("the refusal", func() bool { return victim.err != nil })
	if victim.e.State() != Failed || !IsClientRenegotiation(victim.err) {
		t.Fatalf("state=%v err=%v, want Failed on the renegotiation ClientHello", victim.e.State(), victim.err)
	}
	if victim.readOut == 0 {
		t.Fatal("no alert produced on the read path")
	}
	victim.waitFor(procs[0], `<<< TLS 1.2, Alert \[length 0002\], fatal unexpected_message`)

	exchange(t, other, procs[1], "other-connection")
	if other.e.State() != Open || other.e.Handshakes() != 1 {
		t.Fatalf("other connection: state=%v handshakes=%d", other.e.State(), other.e.Handshakes())
	}
}

// failingConn fails every write once armed, like a non-blocking socket
// whose buffer is full, handed to crypto/tls directly.
type failingConn struct {
	net.Conn
	armed atomic.Bool
}

func (c *failingConn) Write(b []byte) (int, error) {
	if c.armed.Load() {
		return 0, errors.New("transport write refused")
	}
	return c.Conn.Write(b)
}

// TestRawKeyUpdateWriteErrorDesyncsReadKey is the canary for the crypto/tls
// defect in DESIGN 1.4, the reason the engine's output queue never refuses
// a write: when the KeyUpdate answer cannot be written, crypto/tls keeps the
// old read key, and the peer's next record (under the new key) fails with
// bad_record_mac. If this starts passing data through, the defect is fixed
// and DESIGN 1.4 can be revised.
func TestRawKeyUpdateWriteErrorDesyncsReadKey(t *testing.T) {
	p := testPKI(t)
	srvCfg, _ := p.configs(tls.VersionTLS13, p.small, false)
	proc, conn := acceptClient(t, "-tls1_3", "-msg", "-servername", "localhost")
	fc := &failingConn{Conn: conn}
	srv := tls.Server(fc, srvCfg)
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(opensslTimeout))
	if err := srv.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	waitOutput(t, proc, `Verify return code`)
	fc.armed.Store(true)
	proc.send("K")
	// One line per stdin read: s_client drops the rest of a command line.
	waitOutput(t, proc, `>>> TLS 1.3, Handshake \[length 0005\], KeyUpdate`)
	proc.send("data-under-the-new-key")
	_, err := srv.Read(make([]byte, 256))
	if err == nil || !strings.Contains(err.Error(), "bad record MAC") {
		t.Fatalf("Read after a failed KeyUpdate answer = %v; want bad record MAC (has crypto/tls fixed the read-key desync?)", err)
	}
	if _, err := srv.Write([]byte("x")); err == nil {
		t.Fatal("Write succeeded after the failed KeyUpdate answer")
	}
}

// waitOutput waits for openssl output when no engine needs polling.
func waitOutput(t *testing.T, proc *opensslProc, re string) {
	t.Helper()
	want := regexp.MustCompile(re)
	for deadline := time.Now().Add(opensslTimeout); ; time.Sleep(5 * time.Millisecond) {
		if _, ok := proc.seen(want); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for openssl output /%s/", re)
		}
	}
}

// TestRenegotiationWaitsForReadPathFlush shows why the caller must flush
// Output after Read: the ClientHello of a renegotiation is produced by Read,
// and until it is flushed neither side can move (OpenSSL bug 2's shape).
// Flushing it is all it takes for the renegotiation to complete.
func TestRenegotiationWaitsForReadPathFlush(t *testing.T) {
	p := testPKI(t)
	_, cliCfg := p.configs(tls.VersionTLS12, p.small, false)
	cliCfg.Renegotiation = tls.RenegotiateOnceAsClient
	files, err := p.small.WritePEM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	proc, conn := dialServer(t, "-tls1_2", "-msg", "-cert", files.Cert, "-key", files.Key)
	cp := newPeer(t, conn, Client(cliCfg, Options{}))
	cp.handshake()
	cp.waitFor(proc, `CIPHER is`)

	cp.hold = true
	proc.send("r")
	cp.until("the renegotiation ClientHello", func() bool { return cp.e.Pending() > 0 || cp.err != nil })
	held := cp.e.Pending()
	for range 20 { // s_server cannot answer a ClientHello it never got
		cp.poll(5 * time.Millisecond)
	}
	if cp.e.State() != Renegotiating || cp.e.Pending() != held || cp.e.Handshakes() != 1 {
		t.Fatalf("unflushed: state=%v pending=%d (held %d) handshakes=%d; want stuck Renegotiating",
			cp.e.State(), cp.e.Pending(), held, cp.e.Handshakes())
	}
	cp.hold = false
	cp.until("renegotiation", func() bool { return cp.e.Handshakes() == 2 || cp.err != nil })
	exchange(t, cp, proc, "after-flush")
}
