package cmd

import (
	"crypto/x509"
	"net"
	"net/netip"
	"os"
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
	use     bool // ghostunnel's --use-landlock: what moat does anyway
}

func (s *sandboxOptions) register(f *pflag.FlagSet) {
	f.BoolVar(&s.disable, "disable-landlock", false, "do not confine moat with Landlock after start-up (by default it may then only read its certificate directories, connect to --target and bind its own ports)")
	f.BoolVar(&s.use, "use-landlock", false, "ghostunnel's opt-in to Landlock; moat confines itself by default")
	_ = f.MarkDeprecated("use-landlock", "moat confines itself with Landlock by default; --disable-landlock turns it off")
}

// resolverFiles are what Go's DNS resolver reads again at run time, when a
// host name of the target is resolved anew; each is read if present.
var resolverFiles = []string{"/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf"}

// sandboxInputs is what the rules are built from: the services' addresses,
// the files moat reads again while running, and the status port.
type sandboxInputs struct {
	listens []endpoint.Address
	targets []endpoint.Address
	// files are read again at run time: certificates, keys and CA bundles
	// (and CRLs, a configuration file); their directories are allowed.
	files []string
	// unixSockets are connected to besides unix targets (a Workload API
	// socket).
	unixSockets []string
	status      net.Addr // nil without --status
	// openNetwork leaves TCP unrestricted, for a configuration whose
	// reload may add listeners and targets: a Landlock domain cannot be
	// widened later.
	openNetwork bool
}

// addSource adds what a service's certificate source and CRLs read or
// reach while running: their files, and the Workload API's socket (a TCP
// Workload API address leaves the network open: its port is not known to
// the rules).
func (in *sandboxInputs) addSource(src *certs.Source, crls []string) {
	in.files = append(in.files, crls...)
	if src == nil {
		return
	}
	in.files = append(in.files, src.Files()...)
	if addr := src.WorkloadAddr(); addr != "" {
		if path, ok := strings.CutPrefix(addr, "unix://"); ok {
			in.unixSockets = append(in.unixSockets, path)
		} else {
			in.openNetwork = true
		}
	}
}

// addNotifySocket adds systemd's notification socket (NOTIFY_SOCKET), which
// moat writes to until it exits; an abstract socket ("@...") needs no rule.
func (in *sandboxInputs) addNotifySocket() {
	if p := os.Getenv("NOTIFY_SOCKET"); strings.HasPrefix(p, "/") {
		in.unixSockets = append(in.unixSockets, p)
	}
}

// sandboxRules is the one place that says what moat may still do once
// confined:
//
//   - read the directories of its files, whole (the Kubernetes ..data swap
//     and the file watch), and the directories their symlinks lead to;
//   - read what the DNS resolver reads again, and its own /proc entry and
//     /proc/stat (the process metrics of the status port, pprof);
//   - connect to its unix targets and sockets, and remove its own unix
//     listening sockets at exit;
//   - bind its listening ports (--listen, --status), connect to its
//     targets' ports, and to port 53 when a target is a host name that is
//     resolved again while running.
//
// It writes nothing.
func sandboxRules(in sandboxInputs) sandbox.Rules {
	r := sandbox.Rules{OptionalReadFiles: resolverFiles, ConnectUnix: in.unixSockets}
	tcp := &sandbox.Network{}
	for _, f := range in.files {
		r.ReadDirs = append(r.ReadDirs, certDirs(f)...)
	}
	if self, err := filepath.EvalSymlinks("/proc/self"); err == nil {
		r.ReadDirs = append(r.ReadDirs, self)
		r.OptionalReadFiles = append(r.OptionalReadFiles, "/proc/stat")
	}
	for _, l := range in.listens {
		if l.Network() == "unix" {
			r.RemoveIn = append(r.RemoveIn, filepath.Dir(l.Path()))
		} else {
			tcp.BindTCP = append(tcp.BindTCP, uint16(l.Port()))
		}
	}
	if p := tcpPort(in.status); p != 0 {
		tcp.BindTCP = append(tcp.BindTCP, p)
	}
	for _, t := range in.targets {
		if t.Network() == "unix" {
			r.ConnectUnix = append(r.ConnectUnix, t.Path())
			continue
		}
		tcp.ConnectTCP = append(tcp.ConnectTCP, uint16(t.Port()))
		if _, err := netip.ParseAddr(t.Host()); err != nil {
			tcp.DNS = true
		}
	}
	if !in.openNetwork {
		r.Network = tcp
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
		var reg prometheus.Registerer
		if o.status.run != nil {
			reg = o.status.run.reg
		}
		enforced := sandboxGauge(reg)
		if o.sandbox.disable {
			log.Warn().Msg("Landlock is off (--disable-landlock): moat is not confined after start-up")
			return nil
		}
		in := sandboxInputs{listens: []endpoint.Address{cfg.Listen}, targets: []endpoint.Address{cfg.Target.Address()}}
		in.addSource(src, o.crl.files)
		in.addNotifySocket()
		if o.status.run != nil && o.status.run.server != nil {
			in.status = o.status.run.server.Addr()
		}
		preload(cfg)
		return enforceSandbox(log, in, enforced, "--disable-landlock")
	}
}

// enforceSandbox confines the process by the rules of in; off names the
// setting that turns Landlock off, for the error.
func enforceSandbox(log zerolog.Logger, in sandboxInputs, enforced prometheus.Gauge, off string) error {
	rules := sandboxRules(in)
	st, err := sandbox.Enforce(rules)
	switch {
	case err != nil:
		return flagError("disable-landlock", "cannot confine moat with Landlock (%v); fix the path or give %s", err, off)
	case st.Unavailable != nil:
		log.Warn().Err(st.Unavailable).Msg("Landlock is not available: moat runs unconfined")
		return nil
	}
	enforced.Set(1)
	ev := log.Info().Int("landlock_abi", st.ABI).Strs("read", rules.ReadDirs).
		Strs("connect_unix", rules.ConnectUnix).Bool("network", st.Network)
	if st.Network {
		ev = ev.Ints("bind_tcp", ports(rules.Network.BindTCP)).Ints("connect_tcp", ports(rules.Network.ConnectTCP)).Bool("dns", rules.Network.DNS)
	}
	ev.Msg("Landlock enforced: moat may only read its certificates and reach its target from now on")
	return nil
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

// sandboxGauge registers moat_sandbox_enforced on reg (nil without a
// status port) and returns it at 0.
func sandboxGauge(reg prometheus.Registerer) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "moat_sandbox_enforced",
		Help: "1 when moat confined itself with Landlock after start-up, 0 when it runs unconfined (--disable-landlock, or no Landlock in the kernel).",
	})
	if reg != nil {
		reg.MustRegister(g)
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
