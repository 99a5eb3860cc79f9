package cmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/moat-proxy/moat/certs"
	"github.com/spf13/cobra"
)

func newCertsCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "certs",
		Short: "Generate development certificates and inspect certificate chains",
	}
	c.AddCommand(newCertsGenerateCommand(), newCertsInspectCommand())
	return c
}

func newCertsGenerateCommand() *cobra.Command {
	var (
		dir   string
		hosts []string
		force bool
	)
	c := &cobra.Command{
		Use:   "generate --dir DIR [--hosts a,b,127.0.0.1] [--force]",
		Short: "Write a development CA, server and client certificate",
		Long: "generate writes ca.crt ca.key server.crt server.key client.crt client.key into DIR. The server\n" +
			"certificate covers --hosts; the client certificate has CN " + certs.ClientCN + " and URI SAN " + certs.ClientSPIFFE + ".\n" +
			"Keys are written 0600. For development and tests only: the CA key sits next to what it signs.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return flagError("dir", "required: the directory to write certificates into")
			}
			for _, h := range hosts {
				if strings.TrimSpace(h) == "" || strings.ContainsAny(h, " /") {
					return flagError("hosts", "%q is not a host name or IP address", h)
				}
			}
			files, err := certs.Generate(dir, hosts, force)
			if err != nil {
				if errors.Is(err, fs.ErrExist) {
					return fmt.Errorf("%w; use --force to replace", err)
				}
				return err
			}
			return printGenerated(cmd.OutOrStdout(), files)
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "directory to write the certificates and keys into (created if missing)")
	c.Flags().StringSliceVar(&hosts, "hosts", certs.DefaultHosts(), "DNS names and IP addresses the server certificate covers")
	c.Flags().BoolVar(&force, "force", false, "replace existing files")
	return c
}

func printGenerated(w io.Writer, f certs.Files) error {
	_, ca, err := certs.LoadCAPool(f.CACert)
	if err != nil {
		return err
	}
	for _, p := range []string{f.CACert, f.CAKey, f.ServerCert, f.ServerKey, f.ClientCert, f.ClientKey} {
		fmt.Fprintf(w, "wrote %s\n", p)
	}
	// The fingerprint lets a person check they copied the right CA.
	fmt.Fprintf(w, "CA SHA-256 fingerprint %s\n", certs.Fingerprint(ca[0]))
	return nil
}

func newCertsInspectCommand() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "inspect [--json] FILE...",
		Short: "Describe PEM certificate chains, their problems and their handshake size",
		Long: "inspect prints, for each PEM chain file, every certificate's subject, SANs, issuer, validity and\n" +
			"key; problems with the chain (order, missing intermediate, self-signed leaf, expiry); the\n" +
			"estimated size of the first flight a server sends with it in TLS 1.3 and 1.2; and the server\n" +
			"names (SNI) it is chosen for as one of several --cert pairs, warning when two of the files\n" +
			"cover the same name (only one of them is ever served for it).",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{errors.New("certs inspect: give at least one FILE")}
			}
			// The files that could be read are reported even when others
			// could not; the error (and the exit code) names the others.
			reports, err := certs.Inspect(args...)
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if jerr := enc.Encode(reports); jerr != nil {
					return jerr
				}
				return err
			}
			for i, r := range reports {
				if i > 0 {
					fmt.Fprintln(cmd.OutOrStdout())
				}
				printReport(cmd.OutOrStdout(), r)
			}
			return err
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the reports as a JSON array")
	return c
}

// maxSANsShown keeps a 600-name certificate from burying the table.
const maxSANsShown = 8

func printReport(w io.Writer, r certs.Report) {
	fmt.Fprintf(w, "%s\n", r.File)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  #\tSUBJECT\tISSUER\tNOT BEFORE\tNOT AFTER\tDAYS LEFT\tKEY\tSANS\tDER BYTES")
	for i, c := range r.Certificates {
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%d\t%s %d\t%d\t%d\n", i+1, c.Subject, c.Issuer,
			c.NotBefore.UTC().Format(time.DateOnly), c.NotAfter.UTC().Format(time.DateOnly), c.DaysLeft, c.KeyType, c.KeyBits, c.SANCount, c.DERBytes)
	}
	tw.Flush()
	for i, c := range r.Certificates {
		if c.SANCount == 0 {
			continue
		}
		shown := c.SANs[:min(len(c.SANs), maxSANsShown)]
		more := ""
		if c.SANCount > len(shown) {
			more = fmt.Sprintf(" (+%d more; --json lists all)", c.SANCount-len(shown))
		}
		fmt.Fprintf(w, "  SANs of %d: %s%s\n", i+1, strings.Join(shown, ", "), more)
	}
	fmt.Fprintf(w, "  first flight: TLS 1.3 %d bytes (%d with X25519MLKEM768), TLS 1.2 %d bytes; Certificate message %d bytes\n",
		r.Flight.TLS13, r.Flight.TLS13Hybrid, r.Flight.TLS12, r.Flight.CertificateMessage)
	if len(r.Names) > 0 {
		fmt.Fprintf(w, "  served by SNI for: %s\n", strings.Join(r.Names, ", "))
	}
	for _, o := range r.Overlaps {
		fmt.Fprintf(w, "  warning: %s is also covered by %s; as --cert pairs in this order, %s is served for it\n", o.Name, o.Other, o.Served)
	}
	if len(r.Problems) == 0 {
		fmt.Fprintln(w, "  no problems found")
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  problem: %s\n", p)
	}
}
