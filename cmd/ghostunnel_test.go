package cmd

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moat-proxy/moat/certs"
)

// TestEveryGhostunnelFlagIsKnown: each flag of ghostunnel's (testdata,
// from its main.go) is one moat takes, or one it refuses with a line of
// its own; none is "unknown flag".
func TestEveryGhostunnelFlagIsKnown(t *testing.T) {
	f, err := os.Open("testdata/ghostunnel-flags.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	root := newRootCommand()
	commands := map[string][]string{"both": {"server", "client"}, "server": {"server"}, "client": {"client"}}
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		scope, name, _ := strings.Cut(line, " ")
		for _, c := range commands[scope] {
			sub, _, err := root.Find([]string{c})
			if err != nil {
				t.Fatal(err)
			}
			n++
			if sub.Flags().Lookup(name) == nil {
				t.Errorf("moat %s does not know ghostunnel's --%s", c, name)
			}
		}
	}
	if n < 100 {
		t.Fatalf("checked only %d command/flag pairs; the list is incomplete", n)
	}
}

// TestUnsupportedGhostunnelFlagsSayWhy: each flag moat refuses stops it at
// start, before anything else is checked, with one line naming the flag
// and saying what to use instead; value flags and switches alike.
func TestUnsupportedGhostunnelFlagsSayWhy(t *testing.T) {
	for _, u := range unsupported {
		cmds := []string{"server", "client"}
		switch u.scope {
		case serverOnly:
			cmds = cmds[:1]
		case clientOnly:
			cmds = cmds[1:]
		}
		for _, c := range cmds {
			args := []string{c, "--dry-run", "--listen", "127.0.0.1:1", "--target", "127.0.0.1:2"}
			if u.flag.bool {
				args = append(args, "--"+u.flag.name)
			} else {
				args = append(args, "--"+u.flag.name, "some-value")
			}
			_, err := run(t, args...)
			var ue usageError
			if !errors.As(err, &ue) {
				t.Errorf("%s --%s: %v, want a usage error", c, u.flag.name, err)
				continue
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "--"+u.flag.name+": moat does not support this ghostunnel flag: ") || strings.Contains(msg, "\n") || len(msg) < 60 {
				t.Errorf("%s --%s: %q", c, u.flag.name, msg)
			}
		}
	}
}

// ghostFiles writes a development PKI and the keystores made from it: a
// PKCS#12 file (by openssl, as ghostunnel's docs make them) and a combined
// PEM.
func ghostFiles(t *testing.T) (certs.Files, string, string) {
	t.Helper()
	files, err := certs.Generate(t.TempDir(), []string{"127.0.0.1", "localhost"}, false)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(files.ServerCert)
	combined := filepath.Join(dir, "server-combined.pem")
	var pem []byte
	for _, p := range []string{files.ServerCert, files.ServerKey} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		pem = append(pem, b...)
	}
	if err := os.WriteFile(combined, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	p12 := filepath.Join(dir, "server.p12")
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed")
	}
	out, err := exec.Command(openssl, "pkcs12", "-export", "-in", files.ServerCert, "-inkey", files.ServerKey,
		"-certfile", files.CACert, "-out", p12, "-passout", "pass:secret").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl pkcs12: %v\n%s", err, out)
	}
	return files, combined, p12
}

// TestGhostunnelSpellingsDryRun: ghostunnel's ways of giving the
// certificate, the status port and the policy pass --dry-run; the
// combinations that cannot work are refused naming the flag.
func TestGhostunnelSpellingsDryRun(t *testing.T) {
	files, combined, p12 := ghostFiles(t)
	base := []string{"server", "--dry-run", "--listen", "127.0.0.1:1", "--target", "127.0.0.1:2", "--cacert", files.CACert}
	for _, args := range [][]string{
		{"--keystore", p12, "--storepass", "secret", "--allow-cn", "client"},
		{"--keystore", combined, "--allow-uri-san", certs.ClientSPIFFE},
		{"--keystore", combined, "--allow-dns-san", "client.example", "--allow-dns", "other.example"},
		{"--keystore", combined, "--allow-all", "--status", "http://127.0.0.1:6060"},
		{"--keystore", combined, "--allow-all", "--status", "http://127.0.0.1:6060/"},
		{"--keystore", combined, "--allow-all", "--timed-reload", "300s", "--max-conn-lifetime", "1h"},
		{"--keystore", combined, "--allow-all", "--tls-groups", "X25519MLKEM768,X25519,P-256", "--min-tls-version", "1.3"},
		{"--keystore", combined, "--allow-all", "--require-pq"},
		{"--keystore", combined, "--allow-all", "--require-pq", "--tls-groups", "SecP256r1MLKEM768,X25519MLKEM768"},
	} {
		out, err := run(t, append(append([]string{}, base...), args...)...)
		if err != nil || !strings.Contains(out, "configuration is valid") {
			t.Errorf("%v: %v\n%s", args, err, out)
		}
	}
	// A keystore that cannot be opened is a file that cannot be used: a
	// runtime failure (exit 1), naming the flag.
	for _, args := range [][]string{
		{"--keystore", p12, "--storepass", "wrong", "--allow-all"},
		{"--keystore", p12, "--allow-all"}, // encrypted, no --storepass
	} {
		_, err := run(t, append(append([]string{}, base...), args...)...)
		if err == nil || judge(err, true).code != exitRuntime || !strings.HasPrefix(err.Error(), "--keystore:") {
			t.Errorf("%v: %v, want a runtime failure naming --keystore", args, err)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("%v: the error quotes the password: %v", args, err)
		}
	}
	for _, c := range []struct {
		args []string
		flag string
	}{
		{[]string{"--keystore", combined, "--cert", files.ServerCert, "--key", files.ServerKey, "--allow-all"}, "keystore"},
		{[]string{"--keystore", combined, "--allow-all", "--status", "https://127.0.0.1:6060"}, "status"},
		{[]string{"--keystore", combined, "--allow-all", "--status", "unix:/run/moat.sock"}, "status"},
		{[]string{"--keystore", combined, "--allow-all", "--tls-groups", "X25519,X448"}, "tls-groups"},
		{[]string{"--keystore", combined, "--allow-all", "--tls-groups", "X25519,x25519"}, "tls-groups"},
		{[]string{"--keystore", combined, "--allow-all", "--require-pq", "--tls-groups", "X25519MLKEM768,X25519"}, "tls-groups"},
		{[]string{"--keystore", combined, "--allow-all", "--require-pq", "--min-tls-version", "1.2"}, "require-pq"},
		{[]string{"--keystore", combined, "--allow-all", "--min-tls-version", "1.1"}, "min-tls-version"},
		{[]string{"--keystore", combined, "--allow-all", "--max-conn-lifetime", "-1s"}, "max-conn-lifetime"},
	} {
		_, err := run(t, append(append([]string{}, base...), c.args...)...)
		var ue usageError
		if !errors.As(err, &ue) || !strings.HasPrefix(err.Error(), "--"+c.flag+":") {
			t.Errorf("%v: %v, want a usage error naming --%s", c.args, err, c.flag)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("%v: the error quotes the password: %v", c.args, err)
		}
	}
}

// TestAllowSANAliasesAddUp: --allow-dns-san and --allow-uri-san add to
// --allow-dns and --allow-uri, in any order, rather than replacing them.
func TestAllowSANAliasesAddUp(t *testing.T) {
	root := newRootCommand()
	sub, _, err := root.Find([]string{"server"})
	if err != nil {
		t.Fatal(err)
	}
	f := sub.Flags()
	for _, kv := range [][2]string{{"allow-dns", "a"}, {"allow-dns-san", "b"}, {"allow-dns", "c"}, {"allow-uri-san", "spiffe://td/x"}, {"allow-uri", "spiffe://td/y"}} {
		if err := f.Set(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	dns, _ := f.GetStringArray("allow-dns")
	if strings.Join(dns, ",") != "a,b,c" {
		t.Fatalf("--allow-dns holds %v, want a,b,c", dns)
	}
	uris, _ := f.GetStringArray("allow-uri")
	if strings.Join(uris, ",") != "spiffe://td/x,spiffe://td/y" {
		t.Fatalf("--allow-uri holds %v", uris)
	}
}

func TestClientDisableAuthenticationPresentsNoCertificate(t *testing.T) {
	files, combined, _ := ghostFiles(t)
	base := []string{"client", "--dry-run", "--listen", "127.0.0.1:1", "--target", "127.0.0.1:2", "--cacert", files.CACert}
	if out, err := run(t, append(base, "--disable-authentication")...); err != nil || !strings.Contains(out, `"client_certificate":false`) {
		t.Fatalf("--disable-authentication: %v\n%s", err, out)
	}
	if out, err := run(t, append(base, "--keystore", combined)...); err != nil || !strings.Contains(out, `"client_certificate":true`) {
		t.Fatalf("--keystore: %v\n%s", err, out)
	}
	_, err := run(t, append(base, "--disable-authentication", "--keystore", combined)...)
	if err == nil || !strings.HasPrefix(err.Error(), "--disable-authentication:") || !strings.Contains(err.Error(), "--keystore") {
		t.Fatalf("--disable-authentication with --keystore: %v", err)
	}
}

// TestStorepassFromEnvironment: KEYSTORE_PASS stands for --storepass, as
// in ghostunnel, so the password need not be on the command line.
func TestStorepassFromEnvironment(t *testing.T) {
	files, _, p12 := ghostFiles(t)
	args := []string{"server", "--dry-run", "--listen", "127.0.0.1:1", "--target", "127.0.0.1:2", "--cacert", files.CACert, "--keystore", p12, "--allow-all"}
	t.Setenv("KEYSTORE_PASS", "secret")
	if out, err := run(t, args...); err != nil || !strings.Contains(out, "configuration is valid") {
		t.Fatalf("KEYSTORE_PASS=secret: %v\n%s", err, out)
	}
	t.Setenv("KEYSTORE_PASS", "wrong")
	if _, err := run(t, args...); err == nil || !strings.HasPrefix(err.Error(), "--keystore:") {
		t.Fatalf("KEYSTORE_PASS=wrong: %v", err)
	}
}
