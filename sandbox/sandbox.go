// Package sandbox confines moat with Landlock once it has started: from
// then on the process may read only the files and directories it names,
// connect only to the unix sockets and TCP ports it names, bind only the
// TCP ports it names, and write nothing. A bug or a compromise in the data
// path then cannot read other files on the host, nor reach other services.
//
// The rules are a plain value, built in one place by the caller from its
// configuration, and enforced once:
//
//	st, err := sandbox.Enforce(sandbox.Rules{
//		ReadDirs:    []string{"/etc/moat/tls"}, // watched for the ..data swap
//		ConnectUnix: []string{"/run/app.sock"},
//		Network:     &sandbox.Network{BindTCP: []uint16{8443}, ConnectTCP: []uint16{8080}},
//	})
//	log(st.Enforced, st.ABI, st.Network)
//
// Enforcement is best effort across kernels, as Landlock is designed to
// be: on a kernel without Landlock nothing is restricted and Status says
// so; below ABI 4 the network part is left out; below ABI 9 connecting to
// pathname unix sockets is not restricted by the kernel at all. A Landlock
// domain cannot be left or widened later, so a caller whose configuration
// may grow at run time (a reloadable configuration that adds listeners)
// leaves Network nil.
package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/landlock-lsm/go-landlock/landlock"
	llsys "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// Rules is everything the process may still do once confined. Every path
// must exist when Enforce runs, except those in Optional*.
type Rules struct {
	// ReadDirs are directories whose whole tree may be read and listed
	// (certificate directories, so that a Kubernetes ..data swap and an
	// inotify watch keep working).
	ReadDirs []string
	// ReadFiles are single files that may be read.
	ReadFiles []string
	// OptionalReadFiles are read-only files left out when missing
	// (/etc/hosts, /etc/nsswitch.conf: what the resolver reads if present).
	OptionalReadFiles []string
	// ConnectUnix are pathname unix sockets that may be connected to. The
	// right is granted on each socket's directory, so that a socket its
	// server recreates at restart (a new inode) stays reachable.
	ConnectUnix []string
	// RemoveIn are directories in which files may be removed, and nothing
	// else done: where the process's own unix listening socket lives, so
	// that it can take the socket file away at exit.
	RemoveIn []string
	// Network restricts TCP (and, with ABI 10, UDP); nil leaves the
	// network unrestricted.
	Network *Network
}

// Network is what the process may do on the network when restricted.
type Network struct {
	BindTCP    []uint16 // ports that may be bound (listeners)
	ConnectTCP []uint16 // remote ports that may be connected to
	// DNS allows port 53 over TCP and, with ABI 10, UDP (with an
	// ephemeral local port), for resolving host names again at run time.
	DNS bool
}

// Status is what Enforce achieved.
type Status struct {
	// ABI is the kernel's Landlock ABI version; 0 = no Landlock.
	ABI int
	// Enforced reports that a Landlock domain now confines the process.
	Enforced bool
	// Network reports that the network part is enforced: Rules.Network
	// was given and the kernel has ABI 4 or newer.
	Network bool
	// Unavailable says why Landlock could not be used when ABI is 0 (the
	// kernel lacks it, or it was disabled at boot or by a seccomp filter).
	Unavailable error
}

// ErrUnavailable is wrapped by Status.Unavailable.
var ErrUnavailable = errors.New("landlock is not available on this kernel")

// networkABI is the first ABI that restricts TCP bind and connect.
const networkABI = 4

// ABI returns the kernel's Landlock ABI version, or 0 and the reason it
// has none.
func ABI() (int, error) {
	v, err := llsys.LandlockGetABIVersion()
	if err != nil || v < 1 {
		if err == nil {
			err = errors.New("ABI version 0")
		}
		return 0, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return v, nil
}

// Enforce confines the whole process (every thread) to r. On a kernel
// without Landlock it changes nothing and returns a Status saying so with
// a nil error; an error means the rules could not be applied (a path that
// does not exist, a kernel refusal) and nothing was restricted.
func Enforce(r Rules) (Status, error) {
	abi, err := ABI()
	if err != nil {
		return Status{Unavailable: err}, nil
	}
	cfg := landlock.V10.BestEffort()
	rules, err := r.landlockRules()
	if err != nil {
		return Status{ABI: abi}, err
	}
	if r.Network == nil {
		cfg.HandledAccessNet = 0
	}
	if err := cfg.Restrict(rules...); err != nil {
		return Status{ABI: abi}, fmt.Errorf("landlock: %w", err)
	}
	return Status{ABI: abi, Enforced: true, Network: r.Network != nil && abi >= networkABI}, nil
}

// landlockRules turns r into go-landlock's rules.
func (r Rules) landlockRules() ([]landlock.Rule, error) {
	var rules []landlock.Rule
	for _, p := range r.ReadDirs {
		if err := isDir(p); err != nil {
			return nil, err
		}
	}
	for _, p := range r.ReadFiles {
		if _, err := os.Stat(p); err != nil {
			return nil, err
		}
	}
	if dirs := dedup(r.ReadDirs); len(dirs) > 0 {
		rules = append(rules, landlock.RODirs(dirs...))
	}
	if files := dedup(r.ReadFiles); len(files) > 0 {
		rules = append(rules, landlock.ROFiles(files...))
	}
	if files := dedup(r.OptionalReadFiles); len(files) > 0 {
		rules = append(rules, landlock.ROFiles(files...).IgnoreIfMissing())
	}
	var sockDirs []string
	for _, s := range r.ConnectUnix {
		sockDirs = append(sockDirs, filepath.Dir(s))
	}
	if dirs := dedup(sockDirs); len(dirs) > 0 {
		rules = append(rules, landlock.PathAccess(llsys.AccessFSResolveUnix, dirs...))
	}
	if dirs := dedup(r.RemoveIn); len(dirs) > 0 {
		rules = append(rules, landlock.PathAccess(llsys.AccessFSRemoveFile, dirs...))
	}
	if n := r.Network; n != nil {
		rules = append(rules, n.rules()...)
	}
	return rules, nil
}

func (n *Network) rules() []landlock.Rule {
	var rules []landlock.Rule
	for _, p := range dedup(n.BindTCP) {
		rules = append(rules, landlock.BindTCP(p))
	}
	for _, p := range dedup(n.ConnectTCP) {
		rules = append(rules, landlock.ConnectTCP(p))
	}
	if n.DNS {
		rules = append(rules, landlock.ConnectTCP(53), landlock.ConnectSendUDP(53), landlock.BindUDP(0))
	}
	return rules
}

func isDir(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: not a directory", p)
	}
	return nil
}

// dedup returns the distinct values of s, sorted.
func dedup[T string | uint16](s []T) []T {
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}
