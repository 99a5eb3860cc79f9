package e2e

import (
	"crypto/tls"
	"encoding/json"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// recordingConn keeps every byte the server sent, so that a test can read
// the alert a crypto/tls client only reports as text.
type recordingConn struct {
	net.Conn
	got []byte
}

func (r *recordingConn) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.got = append(r.got, p[:n]...)
	return n, err
}

// firstAlert returns the description of the alert record the server's
// stream starts with, or -1 if it starts with anything else.
func firstAlert(b []byte) int {
	if len(b) < 7 || b[0] != 0x15 || b[3] != 0 || b[4] != 2 {
		return -1
	}
	return int(b[6])
}

// closedLineRaw waits for moat's "connection closed" line for client and
// returns it as written, and its fields.
func closedLineRaw(t *testing.T, m *process, client string) (string, map[string]any) {
	t.Helper()
	fields := closedLine(t, m, client, 10*time.Second)
	for _, line := range strings.Split(m.output(), "\n") {
		var f map[string]any
		if json.Unmarshal([]byte(line), &f) == nil && f["message"] == "connection closed" && f["client"] == client {
			return line, fields
		}
	}
	t.Fatalf("no raw line for client %s", client)
	return "", nil
}

// TestServerRefusesInvalidServerName: a ClientHello whose server name is
// 60,000 bytes long, or holds a NUL byte, is refused inside the handshake
// with unrecognized_name (112) in TLS 1.3 and 1.2; the upstream sees no
// connection for it, the refusal is counted as reason "bad-sni", and the
// connection's log line stays short, with the name escaped and cut. A
// valid name, sent next, is relayed as usual.
func TestServerRefusesInvalidServerName(t *testing.T) {
	up := startUpstream(t, upperEcho)
	ops := startOps(t, up.addr())
	bad := map[string]string{
		"60000 bytes": strings.Repeat("a", 60000),
		"NUL byte":    "a\x00b.example",
	}
	refused := 0
	for what, name := range bad {
		for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
			raw, err := net.DialTimeout("tcp", ops.addr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			client := raw.LocalAddr().String()
			rec := &recordingConn{Conn: raw}
			c := tls.Client(rec, &tls.Config{
				// crypto/tls sends ServerName as given; the verification it
				// would fail is beside the point.
				ServerName: name, InsecureSkipVerify: true, MinVersion: version, MaxVersion: version,
			})
			c.SetDeadline(time.Now().Add(10 * time.Second))
			err = c.Handshake()
			if err == nil {
				_, err = c.Read(make([]byte, 1)) // a TLS 1.3 client finishes first
			}
			c.Close()
			refused++
			label := what + "/" + tls.VersionName(version)
			if alert := firstAlert(rec.got); alert != 112 {
				t.Errorf("%s: handshake error %v; server sent % x..., want alert unrecognized_name (112)", label, err, rec.got[:min(len(rec.got), 8)])
			}
			line, fields := closedLineRaw(t, ops.m, client)
			if len(line) > 2048 {
				t.Errorf("%s: log line of %d bytes, want at most 2048", label, len(line))
			}
			sni, _ := fields["sni"].(string)
			if strings.ContainsRune(line, 0) || strings.ContainsRune(sni, 0) {
				t.Errorf("%s: log line carries a NUL byte: %.200q", label, line)
			}
			wantSNI := `a\x00b.example`
			if len(name) > 256 {
				wantSNI = strings.Repeat("a", 256) + "...[cut, 60000 bytes in all]"
			}
			if sni != wantSNI || fields["reason"] != "handshake" {
				t.Errorf("%s: sni %.300q reason %v, want sni %q reason handshake", label, sni, fields["reason"], wantSNI)
			}
			if e, _ := fields["error"].(string); !strings.Contains(e, "server name (SNI) refused") {
				t.Errorf("%s: error %.200q does not say the server name was refused", label, e)
			}
		}
	}

	// OpenSSL's client takes a name it would not accept from a certificate.
	if openssl, err := exec.LookPath("openssl"); err == nil {
		out, _ := exec.Command(openssl, "s_client", "-connect", ops.addr, "-servername", "bad name.example", "-tls1_3").CombinedOutput()
		if !strings.Contains(string(out), "alert number 112") {
			t.Errorf("openssl s_client -servername 'bad name.example': want alert number 112 in its output:\n%s", out)
		}
		refused++
	}

	// A valid name works, and is the first connection the upstream sees:
	// none of the refused ones reached it.
	c, err := ops.dial()
	if err != nil {
		t.Fatalf("valid name: %v", err)
	}
	defer c.Close()
	client := c.LocalAddr().String()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := c.Read(got); err != nil || string(got) != "HELLO" {
		t.Fatalf("valid name: read %q, %v", got, err)
	}
	if n := up.accepted.Load(); n != 1 {
		t.Errorf("upstream accepted %d connections, want 1 (the valid name's): refused names reached it", n)
	}
	c.Close()
	if _, fields := closedLineRaw(t, ops.m, client); fields["sni"] != "localhost" || fields["reason"] != "closed" {
		t.Errorf("valid name: sni %v reason %v, want localhost, closed", fields["sni"], fields["reason"])
	}
	if n := value(ops.metrics(t), "moat_handshake_errors_total", map[string]string{"reason": "bad-sni"}); n != float64(refused) {
		t.Errorf("moat_handshake_errors_total{reason=bad-sni} = %v, want %d", n, refused)
	}
}
