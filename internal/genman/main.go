// Command genman writes moat's manual pages (section 1), one per command,
// from the command tree itself with cobra's doc package, so the pages list
// exactly the flags the binary has:
//
//	go run ./internal/genman -dir dist/man -version v1.2.3
//
// scripts/release.sh runs it; the pages go into the .deb and .rpm. It is a
// program of its own so that the moat binary does not carry the generator.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra/doc"

	"github.com/moat-proxy/moat/cmd"
)

func main() {
	dir := flag.String("dir", "man", "directory to write the pages to (created)")
	version := flag.String("version", cmd.Version, "version for the pages' footer")
	date := flag.String("date", "", "date for the pages' footer, YYYY-MM-DD (default: SOURCE_DATE_EPOCH, else today)")
	flag.Parse()
	if err := run(*dir, *version, *date); err != nil {
		fmt.Fprintf(os.Stderr, "genman: %v\n", err)
		os.Exit(1)
	}
}

func run(dir, version, date string) error {
	when, err := footerDate(date)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	root := cmd.Root()
	root.DisableAutoGenTag = true
	header := &doc.GenManHeader{
		Title:   "MOAT",
		Section: "1",
		Source:  "moat " + version,
		Manual:  "moat manual",
		Date:    &when,
	}
	return doc.GenManTree(root, header, dir)
}

// footerDate honours SOURCE_DATE_EPOCH so that a release's pages are
// reproducible.
func footerDate(date string) (time.Time, error) {
	if date != "" {
		return time.Parse(time.DateOnly, date)
	}
	if epoch := os.Getenv("SOURCE_DATE_EPOCH"); epoch != "" {
		var sec int64
		if _, err := fmt.Sscan(epoch, &sec); err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", epoch, err)
		}
		return time.Unix(sec, 0).UTC(), nil
	}
	return time.Now().UTC(), nil
}
