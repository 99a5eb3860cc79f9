package cmd

import (
	"bytes"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// TestFatalErrorsExitCodeAndLine: a command line moat refuses exits 2, a
// start-up that fails on a file or an address exits 1; either way the error
// is one line, a JSON object naming the flag and the file or address under
// --log-format json (the default), plain text under console and for the
// commands that do not log.
func TestFatalErrorsExitCodeAndLine(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	inUse := busy.Addr().String()
	missing := filepath.Join(t.TempDir(), "missing.crt")
	self := []string{"--self-signed", "--disable-authentication", "--target", "127.0.0.1:9"}
	server := func(args ...string) []string { return append([]string{"server"}, args...) }
	cases := []struct {
		name    string
		args    []string
		code    int
		json    map[string]any // fields of the JSON line; nil: a plain line
		message string         // in the line
	}{
		{"unknown flag", server("--bogus"), exitUsage, map[string]any{}, "unknown flag: --bogus"},
		{"bad duration", server("--idle-timeout=soon"), exitUsage, map[string]any{"flag": "idle-timeout"}, `invalid value "soon"`},
		{"flag without value", server("--listen"), exitUsage, map[string]any{"flag": "listen"}, "needs an argument"},
		{"stray argument", server(append(self, "--listen", "127.0.0.1:0", "extra")...), exitUsage, map[string]any{}, `unexpected argument "extra"`},
		{"unknown command", []string{"serve"}, exitUsage, nil, `unknown command "serve"`},
		{"version's unknown flag", []string{"version", "--bogus"}, exitUsage, nil, "unknown flag: --bogus"},
		{"listen and status on one port", server(append(self, "--dry-run", "--listen", "127.0.0.1:18443", "--status", ":18443")...),
			exitUsage, map[string]any{"flag": "status"}, "--listen 127.0.0.1:18443 binds too"},
		{"missing certificate", server("--listen", "127.0.0.1:0", "--target", "127.0.0.1:9", "--disable-authentication", "--cert", missing, "--key", missing),
			exitRuntime, map[string]any{"flag": "cert", "file": missing}, "--cert: certificate " + missing},
		{"missing certificate, console", server("--log-format", "console", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:9", "--disable-authentication", "--cert", missing, "--key", missing),
			exitRuntime, nil, "moat: --cert: certificate " + missing},
		{"listen port in use", server(append(self, "--listen", inUse)...), exitRuntime, map[string]any{"flag": "listen", "address": inUse}, "address already in use"},
		{"status port in use", server(append(self, "--listen", "127.0.0.1:0", "--status", inUse)...), exitRuntime, map[string]any{"flag": "status", "address": inUse}, "address already in use"},
		{"remote target", server("--dry-run", "--self-signed", "--disable-authentication", "--listen", "127.0.0.1:0", "--target", "10.0.0.1:80"),
			exitUsage, map[string]any{"flag": "target"}, "Add --unsafe-target"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := execute(newRootCommand(), tc.args, &stderr)
			if code != tc.code {
				t.Errorf("exit code %d, want %d; stderr %q", code, tc.code, stderr.String())
			}
			line := lastLine(stderr.String())
			if tc.json == nil {
				if !strings.HasPrefix(line, "moat: ") || !strings.Contains(line, tc.message) {
					t.Fatalf("line %q, want a plain line with %q", line, tc.message)
				}
				return
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(line), &got); err != nil {
				t.Fatalf("last line %q is not JSON: %v", line, err)
			}
			if got["level"] != "fatal" || got["exit_code"] != float64(tc.code) || !strings.Contains(got["message"].(string), tc.message) {
				t.Errorf("line %s: want level fatal, exit_code %d, a message with %q", line, tc.code, tc.message)
			}
			for k, v := range tc.json {
				if got[k] != v {
					t.Errorf("line %s: %s = %v, want %v", line, k, got[k], v)
				}
			}
		})
	}
}

// lastLine is the error's line: the logs of a real start (a self-signed
// certificate's fingerprint, "listening") may come first.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
