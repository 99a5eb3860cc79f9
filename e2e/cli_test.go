package e2e

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-proxy/moat/internal/testpki"
)

// TestBadInputExitsWithOneLine: every bad flag, file or address stops moat
// within a second, non-zero, with one line that names what is wrong and no
// panic trace.
func TestBadInputExitsWithOneLine(t *testing.T) {
	f := serverFiles(t)
	other := serverFiles(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not a certificate"), 0o600)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	ok := []string{"--target", "127.0.0.1:9", "--disable-authentication"}
	cases := []struct {
		name  string
		args  []string
		names string // what the error line must mention
	}{
		{"missing cert", append([]string{"--listen", "127.0.0.1:0", "--cert", filepath.Join(dir, "nope.crt"), "--key", f.Key}, ok...), "nope.crt"},
		{"missing key", append([]string{"--listen", "127.0.0.1:0", "--cert", f.Cert, "--key", filepath.Join(dir, "nope.key")}, ok...), "nope.key"},
		{"garbage cert", append([]string{"--listen", "127.0.0.1:0", "--cert", garbage, "--key", f.Key}, ok...), "garbage.pem"},
		{"mismatched pair", append([]string{"--listen", "127.0.0.1:0", "--cert", f.Cert, "--key", other.Key}, ok...), "do not match"},
		{"malformed listen", append([]string{"--listen", "127.0.0.1", "--cert", f.Cert, "--key", f.Key}, ok...), "--listen"},
		{"malformed target", []string{"--listen", "127.0.0.1:0", "--cert", f.Cert, "--key", f.Key, "--target", "nowhere", "--disable-authentication"}, "--target"},
		{"port in use", append([]string{"--listen", busy.Addr().String(), "--cert", f.Cert, "--key", f.Key}, ok...), "address already in use"},
		{"no authentication choice", []string{"--listen", "127.0.0.1:0", "--cert", f.Cert, "--key", f.Key, "--target", "127.0.0.1:9"}, "--disable-authentication"},
		{"allow without CA", []string{"--listen", "127.0.0.1:0", "--cert", f.Cert, "--key", f.Key, "--target", "127.0.0.1:9", "--allow-cn", "x"}, "--cacert"},
		{"bad log level", append([]string{"--listen", "127.0.0.1:0", "--cert", f.Cert, "--key", f.Key, "--log-level", "loud"}, ok...), "--log-level"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, moatBin, append([]string{"server"}, tc.args...)...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			start := time.Now()
			err := cmd.Run()
			took := time.Since(start)
			if err == nil || cmd.ProcessState.ExitCode() <= 0 {
				t.Fatalf("exit %v, want a non-zero exit; stderr %q", err, stderr.String())
			}
			if took > time.Second {
				t.Fatalf("took %s to fail", took)
			}
			out := strings.TrimSpace(stderr.String())
			if strings.Count(out, "\n") != 0 || strings.Contains(out, "goroutine") || strings.Contains(out, "panic") {
				t.Fatalf("want one line, got %q", out)
			}
			if !strings.Contains(out, tc.names) {
				t.Fatalf("error %q does not mention %q", out, tc.names)
			}
		})
	}
}

// TestKeyNeverLogged: the private key's bytes never reach the logs, even at
// debug level with a failed reload.
func TestKeyNeverLogged(t *testing.T) {
	ca := testpki.NewCA()
	f, err := ca.Issue("localhost").WritePEM(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := os.ReadFile(f.Key)
	m := startMoat(t, "server", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:9", "--cert", f.Cert, "--key", f.Key,
		"--disable-authentication", "--log-level", "debug")
	os.WriteFile(f.Key, append([]byte("corrupt "), key...), 0o600)
	m.cmd.Process.Signal(sighup)
	m.waitFor(t, "certificate reload failed", 5*time.Second)
	body := strings.Join(strings.Split(string(key), "\n")[1:3], "")
	if strings.Contains(strings.ReplaceAll(m.output(), "\\n", ""), body) {
		t.Fatal("private key material appears in the logs")
	}
}
