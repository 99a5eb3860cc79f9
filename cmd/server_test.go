package cmd

import (
	"errors"
	"net"
	"os"
	"path/filepath"
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
	addr := taken.Addr().String()
	base := []string{"server", "--dry-run", "--listen", addr, "--target", "127.0.0.1:8080", "--status", addr}
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
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--cert-dir", empty, "--disable-authentication"}, "--cert-dir"},
		{append([]string{"--cert-dir", mount, "--cacert", filepath.Join(empty, "missing.pem")}, mtls...), "--cert-dir"},
		{append([]string{"--self-signed", "--cacert", filepath.Join(empty, "missing.pem")}, mtls...), "--cacert"},
		{[]string{"--cert-dir", noCA, "--allow-all"}, "ca.crt"},
		{[]string{"--cert", files.ServerCert, "--key", filepath.Join(empty, "missing.key"), "--disable-authentication"}, "--key: key "},
		{[]string{"--cert", files.ServerCert, "--key", files.ServerKey, "--cacert", filepath.Join(empty, "missing.pem"), "--allow-all"}, "--cacert: CA bundle "},
		{[]string{"--cert", filepath.Join(empty, "missing.crt"), "--key", files.ServerKey, "--disable-authentication"}, "--cert: certificate "},
		{[]string{"--self-signed"}, "--disable-authentication"},
		{[]string{"--self-signed", "--cacert", files.CACert, "--allow-all", "--allow-cn", "x"}, "--allow-all"},
		{[]string{"--self-signed", "--cacert", files.CACert, "--allow-uri", "spiffe://td/ns-*"}, "--allow-uri"},
		{[]string{"--self-signed", "--disable-authentication", "--status", "nonsense"}, "--status"},
		{[]string{"--self-signed", "--disable-authentication", "--target", "127.0.0.1"}, "--target"},
		{[]string{"--self-signed", "--disable-authentication", "--proxy-protocol", "v1"}, "--proxy-protocol=v1"},
		{[]string{"--self-signed", "--disable-authentication", "stray"}, "unexpected argument"},
	} {
		_, err := run(t, append(append([]string{}, base...), tc.args...)...)
		var ue usageError
		if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%v: error %v, want a usage error naming %s", tc.args, err, tc.flag)
		}
	}
}
