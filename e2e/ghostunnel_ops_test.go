package e2e

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTimedReloadSeesWhatTheWatchCannot: a keystore reached through a
// symlink into another directory changes without an event in the watched
// directory; the watch's own resync would find it only after 10 s, so a
// new certificate within the reload latency is --timed-reload's doing.
func TestTimedReloadSeesWhatTheWatchCannot(t *testing.T) {
	ca := newPKI(t, "timed reload CA")
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	hidden, shown := t.TempDir(), t.TempDir()
	combined := func(cert, key string) []byte {
		a, _ := os.ReadFile(cert)
		b, _ := os.ReadFile(key)
		return append(a, b...)
	}
	keystoreFile := filepath.Join(hidden, "keystore.pem")
	cert1, key1 := ca.serverCert(t)
	if err := os.WriteFile(keystoreFile, combined(cert1, key1), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(keystoreFile, filepath.Join(shown, "keystore.pem")); err != nil {
		t.Fatal(err)
	}
	up := startUpstream(t, upperEcho)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	m := startMoat(t, "server", "--listen", addr, "--target", up.addr(), "--keystore", filepath.Join(shown, "keystore.pem"),
		"--disable-authentication", "--timed-reload", "300ms")
	m.waitFor(t, "certificates are also re-read periodically (--timed-reload)", step)
	if got := servedSerial(t, addr, roots); got.Cmp(leafSerial(t, cert1)) != 0 {
		t.Fatalf("serves serial %s before the change", got)
	}
	cert2, key2 := ca.serverCert(t)
	if err := os.WriteFile(keystoreFile+".tmp", combined(cert2, key2), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(keystoreFile+".tmp", keystoreFile); err != nil {
		t.Fatal(err)
	}
	took := waitSerial(t, addr, roots, leafSerial(t, cert2), reloadLatency)
	t.Logf("timed reload served the new keystore after %s", took)
	m.waitFor(t, "certificate reloaded", step)
	if n := m.count("certificate reloaded"); n != 1 {
		t.Fatalf("%d reload lines; a timed reload that finds nothing new must not log", n)
	}
}

// TestMaxConnLifetimeResetsOldConnections: a busy connection is cut when
// it reaches --max-conn-lifetime, with a reset rather than a clean close
// (the peer must not take the cut for the end of the stream), and logged
// with reason "max lifetime"; new connections are served.
func TestMaxConnLifetimeResetsOldConnections(t *testing.T) {
	f := serverFiles(t)
	up := startUpstream(t, upperEcho)
	m, addr := moatServer(t, f, up.addr(), "--max-conn-lifetime", "1500ms", "--idle-timeout", "0")
	c, err := tlsDialFiles(addr, f)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	client := c.LocalAddr().String()
	echoLine(t, c, "still young\n")
	deadline := time.Now().Add(30 * time.Second)
	buf := make([]byte, 64)
	for {
		if time.Now().After(deadline) {
			t.Fatal("the connection outlived --max-conn-lifetime 1500ms by 30s")
		}
		c.SetDeadline(time.Now().Add(step))
		if _, err = c.Write([]byte("ping\n")); err == nil {
			_, err = io.ReadFull(c, buf[:5])
		}
		if err != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if errors.Is(err, io.EOF) {
		t.Fatalf("the connection ended with a clean close (%v); a lifetime cut must be a reset", err)
	}
	line := closedLine(t, m, client, step)
	if line["reason"] != "max lifetime" || !strings.Contains(fmt.Sprint(line["error"]), "lifetime limit of 1.5s") {
		t.Fatalf("log line %v", line)
	}
	fresh, err := tlsDialFiles(addr, f)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	echoLine(t, fresh, "a new connection\n")
}

// TestGhostunnelStatusReportsBackendDown: /_status is ghostunnel's JSON,
// 200 while the target accepts and 503 with backend_ok false and the
// error once it does not, and says which addresses moat relays.
func TestGhostunnelStatusReportsBackendDown(t *testing.T) {
	up := startUpstream(t, upperEcho)
	o := startOps(t, up.addr())
	var st map[string]any
	code, body := o.get("/_status")
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != 200 || st["ok"] != true ||
		st["listen_address"] != o.addr || st["forward_address"] != up.addr() || st["mode"] != "server" || st["message"] != "listening" {
		t.Fatalf("/_status %d %s", code, body)
	}
	up.ln.Close()
	deadline := time.Now().Add(step)
	for {
		code, body = o.get("/_status")
		if code == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/_status still %d %s after the target closed", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	st = nil
	if err := json.Unmarshal([]byte(body), &st); err != nil || st["ok"] != false || st["backend_ok"] != false ||
		st["status"] != "critical" || st["backend_status"] != "critical" || st["backend_error"] == "" {
		t.Fatalf("/_status 503 body %s", body)
	}
}
