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

// fipsMode says whether Go's FIPS 140-3 module is in use, and which
// version of it moat was built with ("latest" unless GOFIPS140 froze one).
func fipsMode() string {
	on, enforced := tlspolicy.FIPS()
	switch {
	case enforced:
		return "fips140=only, module " + tlspolicy.FIPSModule()
	case on:
		return "fips140=on, module " + tlspolicy.FIPSModule()
	}
	return "fips140=off"
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print moat's version, commit, Go version and FIPS 140-3 mode",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "moat %s (commit %s, %s, %s/%s, %s)\n", Version, commit(), runtime.Version(), runtime.GOOS, runtime.GOARCH, fipsMode())
		},
	}
}
