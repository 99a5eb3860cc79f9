package charttest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// moatBinary builds moat from the repository root (or uses $MOAT_BIN).
func moatBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("MOAT_BIN"); p != "" {
		return p
	}
	bin := filepath.Join(t.TempDir(), "moat")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = repoRoot
	cmd.Env = os.Environ()
	if os.Getenv("GOTOOLCHAIN") == "" {
		cmd.Env = append(cmd.Env, "GOTOOLCHAIN=auto")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building moat: %v\n%s", err, out)
	}
	return bin
}

// helpFlag is a flag listed by `moat server --help`.
type helpFlag struct {
	typ      string // "" for a boolean flag
	optional bool   // has a default when given without a value (--flag[=v])
}

// helpFlagLine matches cobra's flag lines: "  -h, --help   help", "      --listen string   ...",
// "      --proxy-protocol string[="v1"]   ...".
var helpFlagLine = regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)(?: ([a-zA-Z0-9.]+)(\[="[^"]*"\])?)?(?:\s{2,}|$)`)

func parseHelp(help string) map[string]helpFlag {
	flags := map[string]helpFlag{}
	for _, line := range strings.Split(help, "\n") {
		if m := helpFlagLine.FindStringSubmatch(line); m != nil {
			flags[m[1]] = helpFlag{typ: m[2], optional: m[3] != ""}
		}
	}
	return flags
}

func runMoat(bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestRenderedFlagsParsedByMoat keeps the chart and the CLI from drifting:
// every flag the chart renders for every value set must be listed by
// `moat server --help` with a matching kind (boolean or valued), moat must
// parse the whole rendered command line (`moat server <args> --help` parses
// every flag and its value, then prints help instead of running), and moat
// must accept it as a configuration it would start with: `--dry-run` runs
// every check of a real start (flag combinations, certificate loading,
// addresses) except binding, over certificates laid out where the rendered
// paths point (under a temporary root).
func TestRenderedFlagsParsedByMoat(t *testing.T) {
	bin := moatBinary(t)
	pki := t.TempDir()
	if out, err := runMoat(bin, "certs", "generate", "--dir", pki); err != nil {
		t.Fatalf("moat certs generate: %v\n%s", err, out)
	}
	help, err := runMoat(bin, "server", "--help")
	if err != nil {
		t.Fatalf("moat server --help: %v\n%s", err, help)
	}
	if !strings.Contains(help, "Usage:\n  moat server") {
		t.Fatalf("moat has no server command; moat server --help printed:\n%s", help)
	}
	known := parseHelp(help)
	if _, ok := known["listen"]; !ok {
		t.Fatalf("could not read flags from moat server --help:\n%s", help)
	}

	missing := map[string][]string{} // flag -> value sets rendering it
	for _, v := range valueSets() {
		t.Run(v.name, func(t *testing.T) {
			cmds, err := render(t, v).moatArgs()
			if err != nil {
				t.Fatal(err)
			}
			for _, args := range cmds {
				if len(args) == 0 || args[0] != "server" {
					t.Fatalf("moat args %v do not start with server", args)
				}
				unknown := false
				for _, a := range args[1:] {
					if !strings.HasPrefix(a, "--") {
						t.Errorf("argument %q is not a --flag[=value]", a)
						continue
					}
					name, value, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
					f, ok := known[name]
					switch {
					case !ok:
						unknown = true
						if !slices.Contains(missing[name], v.name) {
							missing[name] = append(missing[name], v.name)
						}
					case f.typ == "" && hasValue && value != "true" && value != "false":
						t.Errorf("%s: moat's --%s is a boolean flag", a, name)
					case f.typ != "" && !hasValue && !f.optional:
						t.Errorf("%s: moat's --%s takes a %s value", a, name, f.typ)
					}
				}
				if unknown {
					continue // reported below, once per flag
				}
				if out, err := runMoat(bin, append(args, "--help")...); err != nil {
					t.Errorf("moat does not parse the rendered command line:\n  moat %s\n%v: %s", strings.Join(args, " "), err, firstLine(out))
					continue
				}
				dry := withFilesUnder(t, t.TempDir(), pki, args)
				if out, err := runMoat(bin, append(dry, "--dry-run")...); err != nil {
					t.Errorf("moat refuses the rendered command line:\n  moat %s\n%v: %s", strings.Join(args, " "), err, firstLine(out))
				}
			}
		})
	}
	if len(missing) > 0 {
		var names []string
		for n := range missing {
			names = append(names, n)
		}
		slices.Sort(names)
		var b strings.Builder
		for _, n := range names {
			fmt.Fprintf(&b, "\n  --%s (value sets: %s)", n, strings.Join(missing[n], ", "))
		}
		t.Errorf("the chart renders flags that moat server does not have:%s", b.String())
	}
}

// withFilesUnder returns args with every absolute path moved under root, and
// lays out there the files the flags name, copied from a `moat certs
// generate` directory: a Secret mount (tls.crt, tls.key, ca.crt) for
// --cert-dir, the CA for --cacert, the server pair for --cert and --key.
func withFilesUnder(t *testing.T, root, pki string, args []string) []string {
	t.Helper()
	place := func(path, from string) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(pki, from))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		name, value, ok := strings.Cut(a, "=")
		if !ok || !filepath.IsAbs(value) {
			continue
		}
		moved := filepath.Join(root, value)
		out[i] = name + "=" + moved
		switch name {
		case "--cert-dir":
			place(filepath.Join(moved, "tls.crt"), "server.crt")
			place(filepath.Join(moved, "tls.key"), "server.key")
			place(filepath.Join(moved, "ca.crt"), "ca.crt")
		case "--cacert":
			place(moved, "ca.crt")
		case "--cert":
			place(moved, "server.crt")
		case "--key":
			place(moved, "server.key")
		case "--crl":
			placeCRL(t, moved, pki)
		}
	}
	return out
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

func TestParseHelp(t *testing.T) {
	help := `Flags:
      --alpn strings                 ALPN protocols
      --cert-dir string              directory
      --disable-authentication       accept clients without a certificate
  -h, --help                         help for server
      --idle-timeout duration        close (default 1h0m0s)
      --proxy-protocol string[="v1"]   accept the PROXY protocol
      --max-concurrent-conns int     most connections

Global Flags:
      --log-format string   log format`
	got := parseHelp(help)
	want := map[string]helpFlag{
		"alpn": {typ: "strings"}, "cert-dir": {typ: "string"}, "disable-authentication": {},
		"help": {}, "idle-timeout": {typ: "duration"}, "proxy-protocol": {typ: "string", optional: true},
		"max-concurrent-conns": {typ: "int"}, "log-format": {typ: "string"},
	}
	if len(got) != len(want) {
		t.Errorf("parsed %v, want %v", got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("--%s: parsed %+v, want %+v", k, got[k], w)
		}
	}
}
