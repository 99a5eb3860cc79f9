package cmd

import (
	"encoding/json"
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

// buildInfo is what `moat version --json` prints and what the
// moat_build_info metric carries.
type buildInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"goversion"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	FIPS      string `json:"fips"`
}

func currentBuild() buildInfo {
	return buildInfo{Version: Version, Commit: commit(), GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH, FIPS: fipsMode()}
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
	var asJSON bool
	c := &cobra.Command{
		Use:   "version",
		Short: "Print moat's version, commit, Go version and FIPS 140-3 mode",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := currentBuild()
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				return enc.Encode(b)
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "moat %s (commit %s, %s, %s/%s, %s)\n", b.Version, b.Commit, b.GoVersion, b.OS, b.Arch, b.FIPS)
			return err
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object: version, commit, goversion, os, arch, fips")
	return c
}
