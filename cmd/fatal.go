package cmd

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/moat-proxy/moat/certs"
)

// How moat ends when it cannot start. Two kinds of fault, decided here and
// nowhere else:
//
//   - the command line is wrong (an unknown flag, a bad value, flags that
//     contradict each other): exit code 2, a usageError;
//   - the command line is right but the world is not (a file that cannot be
//     read, a port in use, a name that does not resolve): exit code 1.
//
// Either way the error is one line on stderr. It names what it is about (a
// blame: the flag, and the file or address when there is one), so that with
// --log-format json the line is a JSON object a log pipeline can index:
//
//	{"level":"fatal","flag":"cert","file":"/etc/moat/tls.crt","exit_code":1,"message":"--cert: certificate /etc/moat/tls.crt: ..."}

// Exit codes.
const (
	exitRuntime = 1
	exitUsage   = 2
)

// blame is an error about one flag's value, and the file or address that
// value names when there is one. It reads "--flag: reason".
type blame struct {
	flag    string
	file    string
	address string
	err     error
}

func (b *blame) Error() string { return "--" + b.flag + ": " + b.err.Error() }
func (b *blame) Unwrap() error { return b.err }

// fileFailure reports a file, given by flag, that could not be used: a
// runtime failure. The file is taken from a certs.FileError when err holds
// one, so that a --cert-dir error names the file inside the directory.
func fileFailure(flag, path string, err error) error {
	var fe *certs.FileError
	if errors.As(err, &fe) && fe.Path != "" {
		path = fe.Path
	}
	return &blame{flag: flag, file: path, err: err}
}

// addressFailure reports an address, given by flag, that could not be
// bound, resolved or connected to: a runtime failure.
func addressFailure(flag, address string, err error) error {
	return &blame{flag: flag, address: address, err: err}
}

// fatal is what an error that stopped moat amounts to at the edge.
type fatal struct {
	code    int
	message string
	blame   *blame // nil when the error names no flag
}

// judge classifies err. ran says whether the command's own run had begun:
// everything cobra refuses before that (unknown commands and flags, values
// that do not parse, stray arguments) is a usage error.
func judge(err error, ran bool) fatal {
	f := fatal{code: exitRuntime, message: oneLine(err)}
	var ue usageError
	if !ran || errors.As(err, &ue) {
		f.code = exitUsage
	}
	errors.As(err, &f.blame)
	return f
}

// write puts the one line on w: a JSON object when asJSON, else plain text.
func (f fatal) write(w io.Writer, asJSON bool) {
	if !asJSON {
		fmt.Fprintf(w, "moat: %s\n", f.message)
		return
	}
	logger := zerolog.New(w)
	ev := logger.WithLevel(zerolog.FatalLevel).Str("time", time.Now().UTC().Format(time.RFC3339Nano))
	if b := f.blame; b != nil {
		ev = ev.Str("flag", b.flag)
		if b.file != "" {
			ev = ev.Str("file", b.file)
		}
		if b.address != "" {
			ev = ev.Str("address", b.address)
		}
	}
	ev.Int("exit_code", f.code).Msg(f.message)
}

// logsAnnotation marks the commands whose output is a log (server and
// client): their fatal errors follow --log-format.
const logsAnnotation = "moat.logs"

// fatalAsJSON says whether cmd's fatal error goes out as a JSON line: a
// logging command whose --log-format is json.
func fatalAsJSON(cmd *cobra.Command) bool {
	if cmd == nil || cmd.Annotations[logsAnnotation] == "" {
		return false
	}
	f := cmd.Flags().Lookup("log-format")
	return f != nil && f.Value.String() == "json"
}

// markRun wraps the run function of every command under c so that *ran is
// set when one begins: errors before that point are cobra's refusals of the
// command line.
func markRun(c *cobra.Command, ran *bool) {
	if run := c.RunE; run != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error { *ran = true; return run(cmd, args) }
	}
	if run := c.Run; run != nil {
		c.Run = func(cmd *cobra.Command, args []string) { *ran = true; run(cmd, args) }
	}
	for _, sub := range c.Commands() {
		markRun(sub, ran)
	}
}
