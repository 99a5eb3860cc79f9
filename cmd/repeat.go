package cmd

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// refuseRepeatedFlags makes a second occurrence of a single-valued flag an
// error in every command of the tree under root: `--listen A --listen B`
// would otherwise keep B and drop A without a word. Flags whose values
// accumulate (the --allow-* lists, --alpn, the --cert/--key pairs of
// server mode: every pflag.SliceValue) and counters keep repeating.
//
// It wraps the flag values, so it covers every flag defined before it is
// called; call it once the whole tree is built.
func refuseRepeatedFlags(root *cobra.Command) {
	wrap := func(f *pflag.Flag) {
		if _, done := f.Value.(*onceValue); done || repeatable(f.Value) {
			return
		}
		f.Value = &onceValue{Value: f.Value}
		if f.DefValue == "0s" {
			// pflag hides a zero default by the value's concrete type,
			// which the wrapper hides in turn; "0" is zero for any type.
			f.DefValue = "0"
		}
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(wrap)
		c.PersistentFlags().VisitAll(wrap)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// repeatable reports whether a flag value is meant to be given several
// times: a list, or a counter.
func repeatable(v pflag.Value) bool {
	if _, ok := v.(pflag.SliceValue); ok {
		return true
	}
	return v.Type() == "count"
}

// onceValue is a flag value that accepts one Set.
type onceValue struct {
	pflag.Value
	first *string // the value given first; nil until then
}

func (v *onceValue) Set(s string) error {
	if v.first != nil {
		return &repeatedFlagError{first: *v.first, second: s}
	}
	v.first = &s
	return v.Value.Set(s)
}

// repeatedFlagError is a single-valued flag given a second time.
type repeatedFlagError struct{ first, second string }

func (e *repeatedFlagError) Error() string {
	return fmt.Sprintf("given more than once (%q, then %q); it takes one value", e.first, e.second)
}
