package e2e

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPlaintextSideLocalOnlyByDefault: the real binary refuses a server
// --target and a client --listen that may leave the host with one line
// naming the --unsafe-* flag and exit code 2, before listening; with the
// flag (or a loopback or unix: address) the same command is valid.
func TestPlaintextSideLocalOnlyByDefault(t *testing.T) {
	// (console: the refusal is the plain line below; in JSON it is
	// TestStartupErrorIsOneJSONLine's.)
	server := []string{"server", "--log-format", "console", "--dry-run", "--listen", "127.0.0.1:0", "--self-signed", "--disable-authentication"}
	client := []string{"client", "--log-format", "console", "--dry-run", "--target", "127.0.0.1:443"}
	sock := "unix:" + filepath.Join(t.TempDir(), "app.sock")
	cases := []struct {
		name string
		args []string
		want string // the one line on stderr; "" when moat accepts
	}{
		{"server remote target", append(server, "--target", "10.0.0.1:80"),
			"moat: --target: 10.0.0.1:80 is not a loopback address or unix socket; plaintext would cross the network. Add --unsafe-target to allow it"},
		{"server host name target", append(server, "--target", "db.internal:5432"),
			"moat: --target: db.internal:5432 is a host name other than localhost, which cannot be proven local; plaintext could cross the network. Add --unsafe-target to allow it"},
		{"server remote target with --unsafe-target", append(server, "--target", "10.0.0.1:80", "--unsafe-target"), ""},
		{"server loopback target", append(server, "--target", "127.0.0.1:80"), ""},
		{"server unix target", append(server, "--target", sock), ""},
		{"client every-address listen", append(client, "--listen", "0.0.0.0:6379"),
			"moat: --listen: 0.0.0.0:6379 is every address of this host, not a loopback address or unix socket; plaintext would cross the network. Add --unsafe-listen to allow it"},
		{"client every-address listen with --unsafe-listen", append(client, "--listen", "0.0.0.0:6379", "--unsafe-listen"), ""},
		{"client loopback listen", append(client, "--listen", "127.0.0.1:6379"), ""},
		{"client unix listen", append(client, "--listen", sock), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, moatBin, tc.args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			out := strings.TrimSpace(stderr.String())
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused (%v): %s", err, out)
				}
				if !strings.Contains(out, "configuration is valid") {
					t.Fatalf("no dry-run verdict in %q", out)
				}
				return
			}
			if code := cmd.ProcessState.ExitCode(); code != 2 {
				t.Errorf("exit code %d, want 2 (usage error)", code)
			}
			if out != tc.want {
				t.Errorf("stderr %q\nwant    %q", out, tc.want)
			}
		})
	}
}
