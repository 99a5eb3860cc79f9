// Package cmd holds moat's command line: the root command, its subcommands and
// the flags that configure them.
package cmd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// logOptions are the persistent flags that shape moat's logs.
type logOptions struct {
	format string
	level  string
}

// newRootCommand builds the command tree: every command is named here.
func newRootCommand() *cobra.Command {
	logs := &logOptions{}
	root := &cobra.Command{
		Use:           "moat",
		Short:         "moat is a sidecar TLS termination proxy",
		Long:          "moat accepts TLS from clients, checks who they are, and relays the plaintext to a local upstream\n(server mode), or carries local plaintext over TLS to a remote server (client mode).",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&logs.format, "log-format", "json", "log format: json (one JSON object per line on stderr) or console")
	root.PersistentFlags().StringVar(&logs.level, "log-level", "info", "log level: debug, info, warn or error")
	root.AddCommand(
		newServerCommand(logs),
		newClientCommand(logs),
		newRunCommand(logs),
		newCertsCommand(),
		newVersionCommand(),
	)
	refuseRepeatedFlags(root)
	root.SetFlagErrorFunc(flagParseError)
	return root
}

// Execute runs the command line and returns the process exit code: 0, 2
// for a usage error, 1 for a runtime failure (see fatal.go). Errors are
// printed as one line on stderr, never as a panic trace.
func Execute() int {
	return execute(newRootCommand(), os.Args[1:], os.Stderr)
}

func execute(root *cobra.Command, args []string, stderr io.Writer) int {
	var ran bool
	markRun(root, &ran)
	root.SetArgs(args)
	root.SetErr(stderr)
	cmd, err := root.ExecuteC()
	if err == nil {
		return 0
	}
	f := judge(err, ran)
	f.write(stderr, fatalAsJSON(cmd))
	return f.code
}

// logBuffer is how many log lines may wait for a slow stderr before lines
// are dropped.
const logBuffer = 4096

// usageError marks an error in the command line itself.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// flagError returns a usage error that names the flag at fault.
func flagError(flag string, format string, args ...any) error {
	return usageError{&blame{flag: flag, err: fmt.Errorf(format, args...)}}
}

// flagParseError turns pflag's refusal of a flag or its value into a usage
// error that names the flag.
func flagParseError(_ *cobra.Command, err error) error {
	var (
		unknown  *pflag.NotExistError
		invalid  *pflag.InvalidValueError
		missing  *pflag.ValueRequiredError
		repeated *repeatedFlagError
	)
	switch {
	case errors.As(err, &invalid) && errors.As(err, &repeated):
		return flagError(invalid.GetFlag().Name, "%v", repeated)
	case errors.As(err, &unknown):
		return usageError{fmt.Errorf("%w (see --help)", err)}
	case errors.As(err, &invalid):
		return usageError{&blame{flag: invalid.GetFlag().Name, err: fmt.Errorf("invalid value %q: %w", invalid.GetValue(), invalid.Unwrap())}}
	case errors.As(err, &missing):
		return usageError{&blame{flag: missing.GetFlag().Name, err: err}}
	}
	return usageError{err}
}

func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// newLogger builds the process logger from --log-format and --log-level.
func (l *logOptions) newLogger(w io.Writer) (zerolog.Logger, func(), error) {
	level, err := zerolog.ParseLevel(strings.ToLower(l.level))
	if err != nil || l.level == "" {
		return zerolog.Nop(), nil, flagError("log-level", "unknown level %q (want debug, info, warn or error)", l.level)
	}
	zerolog.TimeFieldFormat = time.RFC3339Nano
	out := w
	dropped := func(w io.Writer, n int64) {
		fmt.Fprintf(w, `{"level":"warn","dropped_log_lines":%d,"message":"log output was too slow; lines were dropped"}`+"\n", n)
	}
	switch l.format {
	case "json":
	case "console":
		out = zerolog.ConsoleWriter{Out: w, TimeFormat: time.RFC3339}
		dropped = func(_ io.Writer, n int64) { fmt.Fprintf(w, "WRN log output was too slow; %d lines were dropped\n", n) }
	default:
		return zerolog.Nop(), nil, flagError("log-format", "unknown format %q (want json or console)", l.format)
	}
	// The event loops log from their own goroutines; a stderr that stops
	// draining must not stall their connections (see logSink).
	sink := newLogSink(out, logBuffer, dropped)
	return zerolog.New(sink).Level(level).With().Timestamp().Logger(), sink.Close, nil
}

// Root returns moat's command tree, for programs that describe it (the
// manual page generator, internal/genman). The moat binary itself runs
// Execute.
func Root() *cobra.Command { return newRootCommand() }
