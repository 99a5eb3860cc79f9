package cmd

import (
	"crypto/x509"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/moat-proxy/moat/certs"
	"github.com/moat-proxy/moat/endpoint"
	"github.com/moat-proxy/moat/proxy"
	"github.com/moat-proxy/moat/sandbox"
)

// sandboxOptions is --disable-landlock: moat confines itself with Landlock
// unless told not to.
type sandboxOptions struct {
	disable bool
}

func (s *sandboxOptions) register(f *pflag.FlagSet) {
	f.BoolVar(&s.disable, "disable-landlock", false, "do not confine moat with Landlock after start-up (by default it may then only read its certificate directories, connect to --target and bind its own ports)")
}

// resolverFiles are what Go's DNS resolver reads again at run time, when a
// host name of the target is resolved anew; each is read if present.
var resolverFiles = []string{"/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf"}

// sandboxInputs is what the rules are built from: the running proxy's
// configuration, its certificate source and the status port's address.
type sandboxInputs struct {
	listen endpoint.Address
	target endpoint.Address
	certs  []string // the certificate source's files
	status net.Addr // nil without --status
}

// sandboxRules is the one place that says what moat may still do once
// confined:
//
//   - read its certificate directories, whole (the Kubernetes ..data swap
//     and the file watch), and the directories their symlinks lead to;
//   - read what the DNS resolver reads again, and its own /proc entry and
//     /proc/stat (the process metrics of the status port, pprof);
//   - connect to a unix --target, and remove its own unix listening
//     socket at exit;
//   - bind its listening ports (--listen, --status), connect to the
//     target's port, and to port 53 when the target is a host name that
//     is resolved again while running.
//
// It writes nothing. Other inputs that are read after start (a CRL file, a
// Workload API socket, a configuration file) add their paths here.
func sandboxRules(in sandboxInputs) sandbox.Rules {
	r := sandbox.Rules{OptionalReadFiles: resolverFiles, Network: &sandbox.Network{}}
	for _, f := range in.certs {
		r.ReadDirs = append(r.ReadDirs, certDirs(f)...)
	}
	if self, err := filepath.EvalSymlinks("/proc/self"); err == nil {
		r.ReadDirs = append(r.ReadDirs, self)
		r.OptionalReadFiles = append(r.OptionalReadFiles, "/proc/stat")
	}
	if in.listen.Network() == "unix" {
		r.RemoveIn = append(r.RemoveIn, filepath.Dir(in.listen.Path()))
	} else {
		r.Network.BindTCP = append(r.Network.BindTCP, uint16(in.listen.Port()))
	}
	if p := tcpPort(in.status); p != 0 {
		r.Network.BindTCP = append(r.Network.BindTCP, p)
	}
	if in.target.Network() == "unix" {
		r.ConnectUnix = append(r.ConnectUnix, in.target.Path())
	} else {
		r.Network.ConnectTCP = append(r.Network.ConnectTCP, uint16(in.target.Port()))
		if _, err := netip.ParseAddr(in.target.Host()); err != nil {
			r.Network.DNS = true
		}
	}
	slices.Sort(r.ReadDirs)
	r.ReadDirs = slices.Compact(r.ReadDirs)
	return r
}

// certDirs is the directory of a certificate file and, when the file is
// a symlink, the directory of the file it leads to at start-up, both
// absolute: a --cert that is a symlink into another directory reloads
// from there. A Kubernetes Secret's chain (tls.crt -> ..data/tls.crt ->
// ..2026_.../tls.crt) stays inside the first.
func certDirs(file string) []string {
	var dirs []string
	if abs, err := filepath.Abs(file); err == nil {
		file = abs
	}
	dirs = append(dirs, filepath.Dir(file))
	if real, err := filepath.EvalSymlinks(file); err == nil {
		if d := filepath.Dir(real); d != dirs[0] && !strings.HasPrefix(d, dirs[0]+string(filepath.Separator)) {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// tcpPort is the port of a TCP address, 0 for anything else.
func tcpPort(a net.Addr) uint16 {
	if a == nil || a.Network() != "tcp" {
		return 0
	}
	_, p, err := net.SplitHostPort(a.String())
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return uint16(n)
}

// confine returns the runner's Confine step for a proxy command: build the
// rules, load what Go loads lazily from files that will no longer be
// readable, enforce, and say what happened in the log and the
// moat_sandbox_enforced gauge. Landlock missing from the kernel is said
// once and is not an error; rules that cannot be applied are.
func (o *commonOptions) confine(log zerolog.Logger, cfg proxy.Config, src *certs.Source) func() error {
	return func() error {
		enforced := o.sandboxGauge()
		if o.sandbox.disable {
			log.Warn().Msg("Landlock is off (--disable-landlock): moat is not confined after start-up")
			return nil
		}
		in := sandboxInputs{listen: cfg.Listen, target: cfg.Target.Address()}
		if src != nil {
			in.certs = src.Files()
		}
		if o.status.run != nil && o.status.run.server != nil {
			in.status = o.status.run.server.Addr()
		}
		preload(cfg)
		rules := sandboxRules(in)
		st, err := sandbox.Enforce(rules)
		switch {
		case err != nil:
			return flagError("disable-landlock", "cannot confine moat with Landlock (%v); fix the path or give --disable-landlock", err)
		case st.Unavailable != nil:
			log.Warn().Err(st.Unavailable).Msg("Landlock is not available: moat runs unconfined")
			return nil
		}
		enforced.Set(1)
		ev := log.Info().Int("landlock_abi", st.ABI).Strs("read", append(rules.ReadDirs, rules.ReadFiles...)).
			Strs("connect_unix", rules.ConnectUnix).Bool("network", st.Network)
		if st.Network {
			ev = ev.Ints("bind_tcp", ports(rules.Network.BindTCP)).Ints("connect_tcp", ports(rules.Network.ConnectTCP)).Bool("dns", rules.Network.DNS)
		}
		ev.Msg("Landlock enforced: moat may only read its certificates and reach its target from now on")
		return nil
	}
}

// preload makes Go read, while it still can, the files it would otherwise
// read lazily at the first use: the system roots of a client without
// --cacert. (The local time zone of the log lines was loaded by the first
// line logged.)
func preload(cfg proxy.Config) {
	if cfg.Mode == proxy.ModeClient && cfg.TLS.RootCAs == nil {
		x509.SystemCertPool()
	}
}

// sandboxGauge registers moat_sandbox_enforced with the status port's
// metrics, when there is a status port, and returns it at 0.
func (o *commonOptions) sandboxGauge() prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "moat_sandbox_enforced",
		Help: "1 when moat confined itself with Landlock after start-up, 0 when it runs unconfined (--disable-landlock, or no Landlock in the kernel).",
	})
	if o.status.run != nil {
		o.status.run.reg.MustRegister(g)
	}
	return g
}

func ports(p []uint16) []int {
	out := make([]int, len(p))
	for i, v := range p {
		out[i] = int(v)
	}
	return out
}
