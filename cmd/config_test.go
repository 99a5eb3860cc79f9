package cmd

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "moat.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestEveryModeFlagIsAFileKey: the keys of a service are its mode's flags,
// whatever flags the mode has: each flag, given its own default through the
// file, is accepted and goes through the flag's Set.
func TestEveryModeFlagIsAFileKey(t *testing.T) {
	for _, mode := range []struct {
		name  string
		flags *pflag.FlagSet
	}{{"server", newServerMode(&logOptions{}).cmd.Flags()}, {"client", newClientMode(&logOptions{}).cmd.Flags()}} {
		n := 0
		mode.flags.VisitAll(func(f *pflag.Flag) {
			if _, process := processFlags[f.Name]; process || f.Hidden {
				return
			}
			n++
			value := `""`
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				value = "[]"
				if d := sv.GetSlice(); len(d) > 0 {
					value = `["` + strings.Join(d, `", "`) + `"]`
				}
			} else if f.DefValue != "" {
				value = `"` + f.DefValue + `"`
			}
			body := "services:\n  - name: a\n    mode: " + mode.name + "\n    " + f.Name + ": " + value + "\n"
			if _, err := readConfig(writeFile(t, body), &logOptions{}); err != nil {
				t.Errorf("%s key %s: %v", mode.name, f.Name, err)
			}
		})
		if n < 20 {
			t.Errorf("%s: only %d keys", mode.name, n)
		}
	}
}

// TestFileValuesReachTheOptions: a key sets the very option its flag sets,
// and a list sets a repeatable flag once per item.
func TestFileValuesReachTheOptions(t *testing.T) {
	body := `services:
  - name: api
    mode: server
    listen: 127.0.0.1:8443
    target: 127.0.0.1:8080
    allow-cn: [robot, "a, b"]
    idle-timeout: 90s
    max-concurrent-conns: 7
    handshake-memory: 8MiB
    session-tickets: false
    sni: [API.example.com, "*.example.org"]
`
	cf, err := readConfig(writeFile(t, body), &logOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc := cf.services[0]
	o := svc.mode.common
	if o.listen != "127.0.0.1:8443" || o.idleTimeout.String() != "1m30s" || o.maxConns != 7 {
		t.Errorf("common options: %+v", o)
	}
	f := svc.mode.cmd.Flags()
	if cns, _ := f.GetStringArray("allow-cn"); len(cns) != 2 || cns[1] != "a, b" {
		t.Errorf("allow-cn = %q", cns)
	}
	if v := f.Lookup("handshake-memory").Value.String(); v != "8MiB" {
		t.Errorf("handshake-memory = %s", v)
	}
	if v, _ := f.GetBool("session-tickets"); v {
		t.Error("session-tickets still true")
	}
	if strings.Join(svc.sni, ",") != "api.example.com,*.example.org" {
		t.Errorf("sni = %q", svc.sni)
	}
}

// TestSettingsTellChangedFromUnchanged: reading the same service twice
// gives the same settings, reordered keys and comments included; a
// changed value does not.
func TestSettingsTellChangedFromUnchanged(t *testing.T) {
	a := "services:\n  - name: a\n    mode: server\n    listen: 127.0.0.1:1\n    target: 127.0.0.1:2\n    allow-cn: [x, y]\n"
	b := "# the same\nservices:\n  - mode: server\n    target: 127.0.0.1:2 # target\n    name: a\n    allow-cn: [x, y]\n    listen: 127.0.0.1:1\n"
	c := strings.Replace(a, "[x, y]", "[y, x]", 1)
	read := func(body string) string {
		cf, err := readConfig(writeFile(t, body), &logOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cf.services[0].settings
	}
	if read(a) != read(b) {
		t.Error("the same service read differently")
	}
	if read(a) == read(c) {
		t.Error("a changed allow-cn order read as unchanged")
	}
}

func TestConfigErrorsAreFileErrors(t *testing.T) {
	_, err := readConfig(writeFile(t, "services:\n  - name: a\n    mode: client\n    listen: [a, b]\n"), &logOptions{})
	var fe *fileError
	if !errors.As(err, &fe) || fe.line != 4 || fe.key != "listen" {
		t.Fatalf("err = %v, want a fileError at line 4 for listen", err)
	}
}

func TestRunCommandChecksItsFlagsAndFile(t *testing.T) {
	if _, err := run(t, "run"); err == nil || !strings.Contains(err.Error(), "--config: required") {
		t.Errorf("moat run without --config: %v", err)
	}
	if _, err := run(t, "run", "--config", filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "--config:") {
		t.Errorf("moat run with a missing file: %v", err)
	}
	var ue usageError
	_, err := run(t, "run", "--config", writeFile(t, "services: []\n"), "--dry-run")
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), ":1: services: want a list of at least one service") {
		t.Errorf("an empty services list: %v", err)
	}
}

// TestCertsKeyFillsThePairsInOrder: a certs: list sets --cert/--key (or
// --cert-dir) once per item, in order, and every misuse is a file error
// at its line.
func TestCertsKeyFillsThePairsInOrder(t *testing.T) {
	body := `services:
  - name: web
    mode: server
    certs:
      - {cert: default.crt, key: default.key}
      - cert: api.crt
        key: api.key
`
	cf, err := readConfig(writeFile(t, body), &logOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f := cf.services[0].mode.cmd.Flags()
	certs, _ := f.GetStringArray("cert")
	keys, _ := f.GetStringArray("key")
	if strings.Join(certs, ",") != "default.crt,api.crt" || strings.Join(keys, ",") != "default.key,api.key" {
		t.Errorf("cert = %q, key = %q", certs, keys)
	}
	dirs := "services:\n  - name: web\n    mode: server\n    certs:\n      - cert-dir: /a\n      - cert-dir: /b\n"
	cf, err = readConfig(writeFile(t, dirs), &logOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := cf.services[0].mode.cmd.Flags().GetStringArray("cert-dir"); strings.Join(got, ",") != "/a,/b" {
		t.Errorf("cert-dir = %q", got)
	}
	head := "services:\n  - name: web\n    mode: server\n"
	for _, tc := range []struct {
		name, body string
		line       int
		key        string
	}{
		{"a mix", head + "    certs:\n      - {cert: a.crt, key: a.key}\n      - cert-dir: /b\n", 6, "certs"},
		{"a pair without its key", head + "    certs:\n      - cert: a.crt\n", 5, "certs"},
		{"an unknown item key", head + "    certs:\n      - {cert: a.crt, keyfile: a.key}\n", 5, "certs"},
		{"certs and cert", head + "    certs:\n      - {cert: a.crt, key: a.key}\n    cert: b.crt\n", 6, "cert"},
		{"not a list", head + "    certs: a.crt\n", 4, "certs"},
		{"in a client", "services:\n  - name: c\n    mode: client\n    certs:\n      - {cert: a.crt, key: a.key}\n", 4, "certs"},
	} {
		_, err := readConfig(writeFile(t, tc.body), &logOptions{})
		var fe *fileError
		if !errors.As(err, &fe) || fe.line != tc.line || fe.key != tc.key {
			t.Errorf("%s: %v, want a file error at line %d for %s", tc.name, err, tc.line, tc.key)
		}
	}
}
