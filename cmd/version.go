package cmd

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/moat-proxy/moat/tlspolicy"
)

// Version and Commit are stamped at build time:
//
//	go build -ldflags "-X github.com/moat-proxy/moat/cmd.Version=v1.2.3 -X github.com/moat-proxy/moat/cmd.Commit=abc123"
var (
	Version = "dev"
	Commit  = ""
)

func commit() string {
	if Commit != "" {
		return Commit
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

// fipsLine says whether Go's FIPS 140-3 module is in use, and which.
func fipsLine() string {
	on, enforced := tlspolicy.FIPS()
	switch {
	case enforced:
		return fmt.Sprintf("FIPS 140-3 mode: on, enforced (GODEBUG=fips140=only; Go Cryptographic Module %s)", tlspolicy.FIPSModule())
	case on:
		return fmt.Sprintf("FIPS 140-3 mode: on (GODEBUG=fips140=on; Go Cryptographic Module %s)", tlspolicy.FIPSModule())
	}
	return fmt.Sprintf("FIPS 140-3 mode: off (Go Cryptographic Module %s; run with GODEBUG=fips140=on to turn it on)", tlspolicy.FIPSModule())
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print moat's version, commit and Go version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "moat %s (commit %s, %s, %s/%s)\n", Version, commit(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			fmt.Fprintln(cmd.OutOrStdout(), fipsLine())
		},
	}
}
