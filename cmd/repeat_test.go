package cmd

import (
	"errors"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestEverySingleValuedFlagRefusesRepeat walks the whole command tree: each
// flag that takes one value, given twice, stops the command with a usage
// error naming that flag; each list flag takes both values.
func TestEverySingleValuedFlagRefusesRepeat(t *testing.T) {
	var walk func(c *cobra.Command, path []string)
	checked := 0
	walk = func(c *cobra.Command, path []string) {
		for _, sub := range c.Commands() {
			walk(sub, append(append([]string{}, path...), sub.Name()))
		}
		if !c.Runnable() {
			return
		}
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if repeatable(f.Value) {
				return
			}
			v := f.DefValue
			if f.Value.Type() == "bool" {
				v = "true"
			} else if v == "" {
				v = "x"
			}
			args := append(append([]string{}, path...), "--"+f.Name+"="+v, "--"+f.Name+"="+v)
			_, err := run(t, args...)
			var ue usageError
			if !errors.As(err, &ue) || !strings.HasPrefix(err.Error(), "--"+f.Name+": given more than once") {
				t.Errorf("%v: got %v, want a usage error naming --%s", args, err, f.Name)
			}
			checked++
		})
	}
	walk(newRootCommand(), nil)
	if checked < 40 {
		t.Fatalf("only %d flags checked; the walk missed commands", checked)
	}
}

// TestListFlagsStillRepeat: the allow lists and --alpn accumulate.
func TestListFlagsStillRepeat(t *testing.T) {
	for _, name := range []string{"allow-cn", "allow-ou", "allow-dns", "allow-uri", "alpn", "cert", "key", "cert-dir"} {
		f := serverFlag(t, name)
		if !repeatable(f.Value) {
			t.Errorf("--%s should repeat", name)
		}
	}
}

func serverFlag(t *testing.T, name string) *pflag.Flag {
	t.Helper()
	for _, c := range newRootCommand().Commands() {
		if c.Name() == "server" {
			if f := c.Flags().Lookup(name); f != nil {
				return f
			}
		}
	}
	t.Fatalf("no server flag --%s", name)
	return nil
}
