package cmd

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moat-proxy/moat/certs"
)

// secretMount lays out dir the way a Kubernetes TLS Secret is mounted, with
// the server certificate and key, and the CA as ca.crt.
func secretMount(t *testing.T, files certs.Files) string {
	t.Helper()
	dir := t.TempDir()
	for name, from := range map[string]string{"tls.crt": files.ServerCert, "tls.key": files.ServerKey, "ca.crt": files.CACert} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestServerDryRun: --dry-run accepts every valid way of giving the
// certificate and the client CA, without binding --listen or --status (both
// are taken here, so a real start would fail), and refuses a bad command line
// the way a real start would, naming the flag.
func TestServerDryRun(t *testing.T) {
	files, err := certs.Generate(t.TempDir(), []string{"127.0.0.1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	mount := secretMount(t, files)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenStatus, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer takenStatus.Close()
	addr := taken.Addr().String()
	base := []string{"server", "--dry-run", "--listen", addr, "--target", "127.0.0.1:8080", "--status", takenStatus.Addr().String()}
	mtls := []string{"--allow-cn", certs.ClientCN}
	for _, args := range [][]string{
		{"--cert", files.ServerCert, "--key", files.ServerKey, "--disable-authentication"},
		{"--cert", files.ServerCert, "--key", files.ServerKey, "--cacert", files.CACert, "--allow-all"},
		{"--cert-dir", mount, "--allow-uri", certs.ClientSPIFFE},
		append([]string{"--cert-dir", mount, "--cacert", files.CACert}, mtls...), // a client CA of its own
		append([]string{"--self-signed", "--cacert", files.CACert}, mtls...),
		{"--self-signed", "--disable-authentication", "--enable-pprof"},
	} {
		out, err := run(t, append(append([]string{}, base...), args...)...)
		if err != nil {
			t.Errorf("%v: %v", args, err)
		} else if !strings.Contains(out, "configuration is valid") {
			t.Errorf("%v: no confirmation in %q", args, out)
		}
	}

	empty := t.TempDir()
	noCA := secretMount(t, files)
	if err := os.Remove(filepath.Join(noCA, "ca.crt")); err != nil {
		t.Fatal(err)
	}
	// A file that cannot be loaded is a runtime failure (exit 1); a command
	// line that contradicts itself is a usage error (exit 2).
	for _, tc := range []struct {
		args []string
		flag string
		code int
	}{
		{[]string{"--cert-dir", empty, "--disable-authentication"}, "--cert-dir", exitRuntime},
		{append([]string{"--cert-dir", mount, "--cacert", filepath.Join(empty, "missing.pem")}, mtls...), "--cert-dir", exitRuntime},
		{append([]string{"--self-signed", "--cacert", filepath.Join(empty, "missing.pem")}, mtls...), "--cacert", exitRuntime},
		{[]string{"--cert-dir", noCA, "--allow-all"}, "ca.crt", exitRuntime},
		{[]string{"--cert", files.ServerCert, "--key", filepath.Join(empty, "missing.key"), "--disable-authentication"}, "--key: key ", exitRuntime},
		{[]string{"--cert", files.ServerCert, "--key", files.ServerKey, "--cacert", filepath.Join(empty, "missing.pem"), "--allow-all"}, "--cacert: CA bundle ", exitRuntime},
		{[]string{"--cert", filepath.Join(empty, "missing.crt"), "--key", files.ServerKey, "--disable-authentication"}, "--cert: certificate ", exitRuntime},
		{[]string{"--self-signed"}, "--disable-authentication", exitUsage},
		{[]string{"--self-signed", "--cacert", files.CACert, "--allow-all", "--allow-cn", "x"}, "--allow-all", exitUsage},
		{[]string{"--self-signed", "--cacert", files.CACert, "--allow-uri", "spiffe://td/ns-*"}, "--allow-uri", exitUsage},
		{[]string{"--self-signed", "--disable-authentication", "--status", "nonsense"}, "--status", exitUsage},
		{[]string{"--self-signed", "--disable-authentication", "--status", addr}, "--status", exitUsage},
		{[]string{"--self-signed", "--disable-authentication", "--target", "127.0.0.1"}, "--target", exitUsage},
		{[]string{"--self-signed", "--disable-authentication", "--proxy-protocol", "v1"}, "--proxy-protocol=v1", exitUsage},
		{[]string{"--self-signed", "--disable-authentication", "stray"}, "unexpected argument", exitUsage},
	} {
		// A flag the case gives replaces base's value (a single-valued
		// flag given twice would be refused for that alone).
		args := []string{"server", "--dry-run"}
		for i := 2; i+1 < len(base); i += 2 {
			if !slices.Contains(tc.args, base[i]) {
				args = append(args, base[i], base[i+1])
			}
		}
		_, err := run(t, append(args, tc.args...)...)
		if err == nil || judge(err, true).code != tc.code || !strings.Contains(err.Error(), tc.flag) || strings.Contains(err.Error(), "more than once") {
			t.Errorf("%v: error %v, want exit code %d naming %s", tc.args, err, tc.code, tc.flag)
		}
	}
}
