package cmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-proxy/moat/certs"
)

// run executes the moat command line in-process and returns its stdout.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestCertsGenerateThenInspectJSON(t *testing.T) {
	dir := t.TempDir()
	out, err := run(t, "certs", "generate", "--dir", dir, "--hosts", "a.test,b.test,127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, filepath.Join(dir, "server.key")) || strings.Contains(out, "PRIVATE KEY") {
		t.Fatalf("generate output %q", out)
	}
	out, err = run(t, "certs", "inspect", "--json", filepath.Join(dir, "server.crt"), filepath.Join(dir, "client.crt"))
	if err != nil {
		t.Fatal(err)
	}
	var reports []certs.Report
	if err := json.Unmarshal([]byte(out), &reports); err != nil {
		t.Fatalf("inspect --json output does not parse: %v\n%s", err, out)
	}
	if len(reports) != 2 {
		t.Fatalf("%d reports, want 2", len(reports))
	}
	server := reports[0].Certificates[0]
	if want := []string{"DNS:a.test", "DNS:b.test", "IP:127.0.0.1"}; strings.Join(server.SANs, ",") != strings.Join(want, ",") {
		t.Fatalf("server SANs %v, want %v", server.SANs, want)
	}
	if reports[1].Certificates[0].Subject != "CN="+certs.ClientCN+",O=moat" {
		t.Fatalf("client subject %q", reports[1].Certificates[0].Subject)
	}
	if reports[0].Flight.TLS13 == 0 || reports[0].Flight.TLS12 == 0 {
		t.Fatalf("no flight estimate: %+v", reports[0].Flight)
	}
}

func TestCertsInspectHumanTable(t *testing.T) {
	dir := t.TempDir()
	if _, err := run(t, "certs", "generate", "--dir", dir); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "certs", "inspect", filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"SUBJECT", "NOT BEFORE", "CN=moat development CA,O=moat", "ECDSA P-256 256", "first flight: TLS 1.3", "no problems found"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// TestCertsInspectReportsTheReadableFiles: one unreadable file among several
// fails the command, naming that file, but the others are still reported.
func TestCertsInspectReportsTheReadableFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := run(t, "certs", "generate", "--dir", dir); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.crt")
	out, err := run(t, "certs", "inspect", filepath.Join(dir, "ca.crt"), missing, filepath.Join(dir, "server.crt"))
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("error %v, want one naming %s", err, missing)
	}
	for _, want := range []string{filepath.Join(dir, "ca.crt"), filepath.Join(dir, "server.crt")} {
		if !strings.Contains(out, want) {
			t.Errorf("no report for %s beside the unreadable file:\n%s", want, out)
		}
	}
}

func TestCertsErrorsNameTheFileOrFlag(t *testing.T) {
	dir := t.TempDir()
	if _, err := run(t, "certs", "generate", "--dir", dir); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.crt")
	for _, tc := range []struct {
		name  string
		args  []string
		want  string
		usage bool
	}{
		{"existing files", []string{"certs", "generate", "--dir", dir}, filepath.Join(dir, "ca.crt") + ": file already exists", false},
		{"no --dir", []string{"certs", "generate"}, "--dir: required", true},
		{"empty host", []string{"certs", "generate", "--dir", dir, "--hosts", "a,,b"}, "--hosts:", true},
		{"missing file", []string{"certs", "inspect", missing}, "certificate " + missing + ": no such file or directory", false},
		{"key given to inspect", []string{"certs", "inspect", filepath.Join(dir, "ca.key")}, "no PEM certificate found", false},
		{"no files", []string{"certs", "inspect"}, "at least one FILE", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(oneLine(err), "\n") {
				t.Fatalf("error %v, want one line containing %q", err, tc.want)
			}
			var ue usageError
			if errors.As(err, &ue) != tc.usage {
				t.Fatalf("usage error = %v, want %v", !tc.usage, tc.usage)
			}
		})
	}
	if _, err := run(t, "certs", "generate", "--dir", dir, "--force"); err != nil {
		t.Fatalf("--force: %v", err)
	}
}
