package e2e

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"net"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestStartupErrorIsOneJSONLine: with --log-format json (the default) the
// real binary's fatal start-up error is one JSON object on stderr, naming
// the flag and the address or file, and the exit code says whose fault it
// is: 2 for the command line, 1 for the world.
func TestStartupErrorIsOneJSONLine(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	f := serverFiles(t)
	cases := []struct {
		name   string
		args   []string
		code   int
		fields map[string]any
	}{
		{"port in use", []string{"server", "--listen", busy.Addr().String(), "--target", "127.0.0.1:9", "--cert", f.Cert, "--key", f.Key, "--disable-authentication"},
			1, map[string]any{"flag": "listen", "address": busy.Addr().String()}},
		{"missing key", []string{"server", "--log-format=json", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:9", "--cert", f.Cert, "--key", f.Cert + ".nope", "--disable-authentication"},
			1, map[string]any{"flag": "key", "file": f.Cert + ".nope"}},
		{"endless CA bundle", []string{"client", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:443", "--cacert", "/dev/zero"},
			1, map[string]any{"flag": "cacert", "file": "/dev/zero"}},
		{"endless CRL", []string{"server", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:9", "--cert", f.Cert, "--key", f.Key, "--cacert", f.CA, "--allow-all", "--crl", "/dev/zero"},
			1, map[string]any{"flag": "crl", "file": "/dev/zero"}},
		{"bad value", []string{"client", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:443", "--connect-timeout", "never"},
			2, map[string]any{"flag": "connect-timeout"}},
		{"unknown flag", []string{"server", "--no-such-flag"}, 2, map[string]any{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, moatBin, tc.args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != tc.code {
				t.Errorf("exit code %d, want %d", code, tc.code)
			}
			out := strings.TrimSpace(stderr.String())
			if strings.Contains(out, "\n") {
				t.Fatalf("want one line, got %q", out)
			}
			var line map[string]any
			if err := json.Unmarshal([]byte(out), &line); err != nil {
				t.Fatalf("stderr %q is not one JSON object: %v", out, err)
			}
			if line["level"] != "fatal" || line["message"] == "" || line["time"] == nil {
				t.Errorf("line %s: want level fatal, a message and a time", out)
			}
			for k, v := range tc.fields {
				if line[k] != v {
					t.Errorf("line %s: %s = %v, want %v", out, k, line[k], v)
				}
			}
		})
	}
}

// TestVersionJSON: `moat version --json` is one JSON object whose fields
// agree with the binary's build information.
func TestVersionJSON(t *testing.T) {
	out, err := exec.Command(moatBin, "version", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]string
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	info, err := buildinfo.ReadFile(moatBin)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"version": "dev", "goversion": info.GoVersion, "os": runtime.GOOS, "arch": runtime.GOARCH}
	for k, w := range want {
		if v[k] != w {
			t.Errorf("%s = %q, want %q (all: %s)", k, v[k], w, out)
		}
	}
	if v["commit"] == "" {
		t.Errorf("no commit in %s", out)
	}
}

// TestBuildInfoMetric: /metrics carries moat_build_info = 1 with the
// version, commit and Go version `moat version --json` prints.
func TestBuildInfoMetric(t *testing.T) {
	out, err := exec.Command(moatBin, "version", "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]string
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	o := startOps(t, "127.0.0.1:9")
	labels := map[string]string{"version": v["version"], "commit": v["commit"], "goversion": v["goversion"]}
	if got := value(o.metrics(t), "moat_build_info", labels); got != 1 {
		t.Fatalf("moat_build_info%v = %v, want 1", labels, got)
	}
}
