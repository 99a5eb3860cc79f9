package e2e

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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
	unreadable := filepath.Join(dir, "a-directory.pem")
	if err := os.Mkdir(unreadable, 0o700); err != nil {
		t.Fatal(err)
	}
	ok := []string{"--target", "127.0.0.1:9", "--disable-authentication"}
	cases := []struct {
		name  string
		args  []string
		names string // what the error line must mention
		also  string // and this too, when not empty
	}{
		{"missing cert", append([]string{"--listen", "127.0.0.1:0", "--cert", filepath.Join(dir, "nope.crt"), "--key", f.Key}, ok...), "nope.crt", ""},
		{"missing key", append([]string{"--listen", "127.0.0.1:0", "--cert", f.Cert, "--key", filepath.Join(dir, "nope.key")}, ok...), "nope.key", ""},
		{"garbage cert", append([]string{"--listen", "127.0.0.1:0", "--cert", garbage, "--key", f.Key}, ok...), "garbage.pem", ""},
		{"mismatched pair", append([]string{"--listen", "127.0.0.1:0", "--cert", f.Cert, "--key", other.Key}, ok...), "do not match", ""},
		{"malformed listen", append([]string{"--listen", "127.0.0.1", "--cert", f.Cert, "--key", f.Key}, ok...), "--listen", ""},
		{"malformed target", []string{"--listen", "127.0.0.1:0", "--cert", f.Cert, "--key", f.Key, "--target", "nowhere", "--disable-authentication"}, "--target", ""},
		{"port in use", append([]string{"--listen", busy.Addr().String(), "--cert", f.Cert, "--key", f.Key}, ok...), "address already in use", ""},
		{"no authentication choice", []string{"--listen", "127.0.0.1:0", "--cert", f.Cert, "--key", f.Key, "--target", "127.0.0.1:9"}, "--disable-authentication", ""},
		{"allow without CA", []string{"--listen", "127.0.0.1:0", "--cert", f.Cert, "--key", f.Key, "--target", "127.0.0.1:9", "--allow-cn", "x"}, "--cacert", ""},
		{"allow-uri matching only invalid SPIFFE IDs", []string{"--listen", "127.0.0.1:0", "--cert", f.Cert, "--key", f.Key, "--target", "127.0.0.1:9", "--cacert", f.CA, "--allow-uri", "spiffe://td/ns/../**"}, "--allow-uri", "spiffe://td/ns/../**"},
		{"bad log level", append([]string{"--listen", "127.0.0.1:0", "--cert", f.Cert, "--key", f.Key, "--log-level", "loud"}, ok...), "--log-level", ""},
		// Unreadable files: the tests run as root, who reads any file
		// whatever its mode, so a directory stands in for one.
		{"directory as cert", append([]string{"--listen", "127.0.0.1:0", "--cert", unreadable, "--key", f.Key}, ok...), "--cert", unreadable},
		{"directory as key", append([]string{"--listen", "127.0.0.1:0", "--cert", f.Cert, "--key", unreadable}, ok...), "--key", unreadable},
		{"directory as cacert", []string{"--listen", "127.0.0.1:0", "--cert", f.Cert, "--key", f.Key, "--target", "127.0.0.1:9", "--cacert", unreadable, "--allow-all"}, "--cacert", unreadable},
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
			if !strings.Contains(out, tc.names) || !strings.Contains(out, tc.also) {
				t.Fatalf("error %q does not mention %q and %q", out, tc.names, tc.also)
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

// TestVersionPrintsVersionCommitAndGo: `moat version` prints one line on
// stdout with the version, the commit and the Go version. TestMain builds
// without -ldflags, so the version is "dev" and the commit is the VCS
// revision the go command stamped into the binary, or "unknown" when it
// stamped none (-buildvcs=false, or no git); either way it is what the
// binary's build information says. A second build stamps both with
// -ldflags -X, the way the README says releases are made.
func TestVersionPrintsVersionCommitAndGo(t *testing.T) {
	check := func(t *testing.T, bin, version, commit string) {
		t.Helper()
		cmd := exec.Command(bin, "version")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Fatalf("moat version: %v, stderr %q", err, stderr.String())
		}
		info, err := buildinfo.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(info.GoVersion, "go1.26") {
			t.Fatalf("the binary was built with %s, go.mod asks for go1.26", info.GoVersion)
		}
		line := string(out)
		if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
			t.Fatalf("want one line, got %q", line)
		}
		for _, want := range []string{"moat " + version + " ", "commit " + commit, info.GoVersion, "go1.26", runtime.GOOS + "/" + runtime.GOARCH} {
			if !strings.Contains(line, want) {
				t.Errorf("%q does not contain %q", line, want)
			}
		}
	}
	t.Run("test build", func(t *testing.T) {
		info, err := buildinfo.ReadFile(moatBin)
		if err != nil {
			t.Fatal(err)
		}
		commit := "unknown"
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				commit = s.Value
			}
		}
		check(t, moatBin, "dev", commit)
	})
	t.Run("stamped build", func(t *testing.T) {
		bin := filepath.Join(t.TempDir(), "moat")
		build := exec.Command("go", "build", "-o", bin, "-ldflags",
			"-X github.com/moat-proxy/moat/cmd.Version=v9.8.7-e2e -X github.com/moat-proxy/moat/cmd.Commit=0123abcd", "..")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
		check(t, bin, "v9.8.7-e2e", "0123abcd")
	})
}
