package cmd

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/moat-proxy/moat/endpoint"
	"github.com/moat-proxy/moat/internal/boundedfile"
	"github.com/moat-proxy/moat/sni"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// The configuration file of moat run holds several services, each with the
// keys of its mode's command-line flags. The keys are not listed here:
// each service is applied to a fresh `moat server` or `moat client`
// command, key by key through the flag's own Set, so that a flag added to
// a mode is a key of the file at once, with the same parsing and the same
// checks (commonOptions.prepare) as on the command line.

// modeCommand is a proxy command with its options: what the command line
// runs, and what moat run fills from a file.
type modeCommand struct {
	cmd       *cobra.Command
	common    *commonOptions
	configure configureFunc
}

// configFile is a parsed configuration file.
type configFile struct {
	path      string
	status    string
	pprof     bool
	noSandbox bool // disable-landlock
	logLevel  string
	logFormat string
	services  []*serviceSpec
}

// serviceSpec is one service of the file, applied to its mode's flags.
type serviceSpec struct {
	name      string
	server    bool           // mode: server
	line      int            // where the service begins
	keyLines  map[string]int // the line of each key, for errors
	sni       []string
	isDefault bool
	mode      modeCommand
	// settings is the service's flags that the file set, written out in
	// one canonical form: equal settings mean an unchanged service.
	settings string
}

// fileError is a configuration error: the file, the line, the key, why.
type fileError struct {
	path string
	line int
	key  string
	err  error
}

func (e *fileError) Error() string {
	if e.key == "" {
		return fmt.Sprintf("%s:%d: %v", e.path, e.line, e.err)
	}
	return fmt.Sprintf("%s:%d: %s: %v", e.path, e.line, e.key, e.err)
}

func (e *fileError) Unwrap() error { return e.err }

// topKeys are the file's process-wide keys.
var topKeys = []string{"status", "enable-pprof", "disable-landlock", "log-level", "log-format", "services"}

// processFlags are flags of the modes that belong to the whole process in
// a file: the status port is shared, and --dry-run is moat run's own.
var processFlags = map[string]string{
	"status":           "is set once for the process: put it at the top level of the file",
	"enable-pprof":     "is set once for the process: put it at the top level of the file",
	"disable-landlock": "is set once for the process: put it at the top level of the file",
	"dry-run":          "is a flag of moat run, not a key of a service",
}

// readConfig reads and checks a configuration file: its syntax, its keys,
// their values and the clashes between services. It does not load
// certificates or resolve targets (see prepareService).
func readConfig(path string, logs *logOptions) (*configFile, error) {
	data, err := boundedfile.Read(path, boundedfile.MaxConfig)
	if err != nil {
		return nil, err // an *fs.PathError: the file could not be read, a runtime failure
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %s", path, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	cf := &configFile{path: path, logLevel: logs.level, logFormat: logs.format}
	if len(doc.Content) == 0 {
		return nil, &fileError{path: path, line: 1, err: errors.New("the file is empty: want a mapping with a services list")}
	}
	if err := cf.top(doc.Content[0], logs); err != nil {
		return nil, err
	}
	if err := cf.checkClashes(); err != nil {
		return nil, err
	}
	return cf, nil
}

func (cf *configFile) errorf(n *yaml.Node, key, format string, args ...any) error {
	return &fileError{path: cf.path, line: n.Line, key: key, err: fmt.Errorf(format, args...)}
}

// top reads the top-level mapping.
func (cf *configFile) top(root *yaml.Node, logs *logOptions) error {
	if root.Kind != yaml.MappingNode {
		return cf.errorf(root, "", "want a mapping with services: at the top level")
	}
	var services *yaml.Node
	err := eachKey(root, func(k, v *yaml.Node) error {
		switch k.Value {
		case "services":
			services = v
			return nil
		case "status", "log-level", "log-format":
			s, err := cf.scalar(k, v)
			if err != nil {
				return err
			}
			*map[string]*string{"status": &cf.status, "log-level": &cf.logLevel, "log-format": &cf.logFormat}[k.Value] = s
			return nil
		case "enable-pprof":
			return v.Decode(&cf.pprof)
		case "disable-landlock":
			return v.Decode(&cf.noSandbox)
		}
		return cf.errorf(k, k.Value, "unknown key (want one of %s)", strings.Join(topKeys, ", "))
	}, cf)
	if err != nil {
		return err
	}
	if services == nil || services.Kind != yaml.SequenceNode || len(services.Content) == 0 {
		at := root
		if services != nil {
			at = services
		}
		return cf.errorf(at, "services", "want a list of at least one service")
	}
	return cf.readServices(services, logs)
}

func (cf *configFile) scalar(k, v *yaml.Node) (string, error) {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		return "", cf.errorf(v, k.Value, "want a single value")
	}
	return v.Value, nil
}

// eachKey calls f for each key of a mapping in order, refusing a key given
// twice.
func eachKey(m *yaml.Node, f func(k, v *yaml.Node) error, cf *configFile) error {
	seen := make(map[string]bool)
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return cf.errorf(k, "", "want a key name")
		}
		if seen[k.Value] {
			return cf.errorf(k, k.Value, "given twice")
		}
		seen[k.Value] = true
		if err := f(k, v); err != nil {
			var fe *fileError
			var te *yaml.TypeError
			if errors.As(err, &te) {
				return cf.errorf(v, k.Value, "wrong type: %s", strings.Join(te.Errors, "; "))
			} else if !errors.As(err, &fe) {
				return cf.errorf(v, k.Value, "%v", err)
			}
			return err
		}
	}
	return nil
}

// readServices reads each service, refusing duplicate names.
func (cf *configFile) readServices(list *yaml.Node, logs *logOptions) error {
	names := make(map[string]int)
	for _, item := range list.Content {
		svc, err := cf.readService(item, logs)
		if err != nil {
			return err
		}
		if line, dup := names[svc.name]; dup {
			return cf.errorf(item, "name", "service %q is already defined at line %d", svc.name, line)
		}
		names[svc.name] = svc.line
		cf.services = append(cf.services, svc)
	}
	return nil
}

// readService applies one service's keys to a fresh command of its mode.
func (cf *configFile) readService(item *yaml.Node, logs *logOptions) (*serviceSpec, error) {
	if item.Kind != yaml.MappingNode {
		return nil, cf.errorf(item, "", "a service is a mapping with name, mode and its flags")
	}
	svc := &serviceSpec{line: item.Line, keyLines: make(map[string]int)}
	var mode *yaml.Node
	for i := 0; i+1 < len(item.Content); i += 2 {
		switch k, v := item.Content[i], item.Content[i+1]; k.Value {
		case "name":
			name, err := cf.scalar(k, v)
			if err != nil {
				return nil, err
			}
			if err := checkServiceName(name); err != nil {
				return nil, cf.errorf(v, "name", "%v", err)
			}
			svc.name = name
		case "mode":
			mode = v
		}
	}
	switch {
	case svc.name == "":
		return nil, cf.errorf(item, "name", "every service needs a name")
	case mode == nil:
		return nil, cf.errorf(item, "mode", "service %q needs a mode: server or client", svc.name)
	case mode.Value == "server":
		svc.server, svc.mode = true, newServerMode(logs)
	case mode.Value == "client":
		svc.mode = newClientMode(logs)
	default:
		return nil, cf.errorf(mode, "mode", "%q: want server or client", mode.Value)
	}
	flags := svc.mode.cmd.Flags()
	err := eachKey(item, func(k, v *yaml.Node) error {
		svc.keyLines[k.Value] = k.Line
		switch k.Value {
		case "name", "mode":
			return nil
		case "sni", "default":
			return cf.routeKey(svc, k, v)
		case "certs":
			return cf.certsKey(svc, flags, k, v)
		}
		if why, ok := processFlags[k.Value]; ok {
			return cf.errorf(k, k.Value, "%s", why)
		}
		return cf.setFlag(flags, k, v)
	}, cf)
	if err != nil {
		return nil, err
	}
	if _, ok := svc.keyLines["certs"]; ok {
		for _, name := range []string{"cert", "key", "cert-dir"} {
			if line, ok := svc.keyLines[name]; ok {
				return nil, &fileError{path: cf.path, line: line, key: name, err: errors.New("give the certificates as certs or as cert/key/cert-dir, not both")}
			}
		}
	}
	svc.settings = settingsOf(svc, flags)
	return svc, nil
}

// checkServiceName keeps names fit for a log field, a metric label and a
// query parameter.
func checkServiceName(name string) error {
	if len(name) > 64 {
		return errors.New("at most 64 characters")
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.", r)) {
			return fmt.Errorf("%q: use letters, digits, '-', '_' and '.'", name)
		}
	}
	return nil
}

// setFlag applies one key through its flag: a list only to a flag that
// repeats, each item through Set as if the flag were given once per item.
func (cf *configFile) setFlag(flags *pflag.FlagSet, k, v *yaml.Node) error {
	f := flags.Lookup(k.Value)
	if f == nil || f.Hidden {
		return cf.errorf(k, k.Value, "unknown key (the keys are the flags of moat %s without the dashes)", flagsMode(flags))
	}
	var values []*yaml.Node
	switch v.Kind {
	case yaml.ScalarNode:
		if v.Tag == "!!null" {
			return cf.errorf(v, k.Value, "no value")
		}
		values = []*yaml.Node{v}
	case yaml.SequenceNode:
		if !repeatable(f.Value) {
			return cf.errorf(v, k.Value, "wrong type: a list, but --%s takes one value", f.Name)
		}
		values = v.Content
	default:
		return cf.errorf(v, k.Value, "wrong type: want a value or a list of values")
	}
	for _, item := range values {
		if item.Kind != yaml.ScalarNode || item.Tag == "!!null" {
			return cf.errorf(item, k.Value, "wrong type: want a value")
		}
		if err := f.Value.Set(item.Value); err != nil {
			return cf.errorf(item, k.Value, "%v", err)
		}
		f.Changed = true
	}
	return nil
}

func flagsMode(flags *pflag.FlagSet) string {
	if flags.Lookup("self-signed") != nil {
		return "server"
	}
	return "client"
}

// certsKey reads a server service's certs: list, its certificates chosen
// by SNI, the first the default. Each item is a pair (cert: and key:) or a
// Secret mount (cert-dir:); the items go to the --cert/--key or --cert-dir
// flags in order, as if given on the command line, so that one check
// covers both.
func (cf *configFile) certsKey(svc *serviceSpec, flags *pflag.FlagSet, k, v *yaml.Node) error {
	if !svc.server {
		return cf.errorf(k, k.Value, "only a server service serves certificates by SNI; a client's is cert and key")
	}
	if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
		return cf.errorf(v, k.Value, "want a list of {cert: FILE, key: FILE} or {cert-dir: DIR} items")
	}
	var dirs, pairs int
	for _, item := range v.Content {
		if item.Kind != yaml.MappingNode {
			return cf.errorf(item, k.Value, "want {cert: FILE, key: FILE} or {cert-dir: DIR}")
		}
		got := map[string]*yaml.Node{}
		err := eachKey(item, func(ik, iv *yaml.Node) error {
			switch ik.Value {
			case "cert", "key", "cert-dir":
				if iv.Kind != yaml.ScalarNode || iv.Tag == "!!null" || iv.Value == "" {
					return cf.errorf(iv, k.Value, "%s: want a path", ik.Value)
				}
				got[ik.Value] = iv
				return nil
			}
			return cf.errorf(ik, k.Value, "%s: unknown key in a certs item (cert, key or cert-dir)", ik.Value)
		}, cf)
		if err != nil {
			return err
		}
		var order []string
		switch {
		case got["cert-dir"] != nil && len(got) == 1:
			dirs++
			order = []string{"cert-dir"}
		case got["cert"] != nil && got["key"] != nil && len(got) == 2:
			pairs++
			order = []string{"cert", "key"}
		default:
			return cf.errorf(item, k.Value, "each item is cert: and key: together, or cert-dir: alone")
		}
		if dirs > 0 && pairs > 0 {
			return cf.errorf(item, k.Value, "all items are cert/key pairs or all are cert-dir mounts, not a mix")
		}
		for _, name := range order {
			f := flags.Lookup(name)
			if err := f.Value.Set(got[name].Value); err != nil {
				return cf.errorf(got[name], k.Value, "%v", err)
			}
			f.Changed = true
		}
	}
	return nil
}

// routeKey reads the SNI routing keys of a server service.
func (cf *configFile) routeKey(svc *serviceSpec, k, v *yaml.Node) error {
	if !svc.server {
		return cf.errorf(k, k.Value, "only a server service is routed by SNI")
	}
	if k.Value == "default" {
		return v.Decode(&svc.isDefault)
	}
	var names []string
	if v.Kind == yaml.ScalarNode {
		names = []string{v.Value}
	} else if err := v.Decode(&names); err != nil {
		return err
	}
	for _, n := range names {
		if err := sni.CheckPattern(n); err != nil {
			return cf.errorf(v, "sni", "%v", err)
		}
		svc.sni = append(svc.sni, strings.ToLower(n))
	}
	return nil
}

// settingsOf writes out what the file set for a service, sorted, so that
// two readings of an unchanged service compare equal.
func settingsOf(svc *serviceSpec, flags *pflag.FlagSet) string {
	var lines []string
	flags.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			v := f.Value.String()
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				v = strings.Join(sv.GetSlice(), "\x00")
			}
			lines = append(lines, f.Name+"="+v)
		}
	})
	slices.Sort(lines)
	lines = append(lines, fmt.Sprintf("mode-server=%v", svc.server), "sni="+strings.Join(svc.sni, ","), fmt.Sprintf("default=%v", svc.isDefault))
	return strings.Join(lines, "\n")
}

// listenAddress is where a service listens, written out one way, or ""
// when its listen flag does not parse (prepare reports that).
func (svc *serviceSpec) listenAddress() string {
	a, err := endpoint.ParseListen(svc.mode.common.listen)
	if err != nil || (a.Network() == "tcp" && a.Port() == 0) {
		return ""
	}
	return a.String()
}

// routed says the service is chosen by SNI on a listener it may share.
func (svc *serviceSpec) routed() bool { return len(svc.sni) > 0 || svc.isDefault }

// unitKey names the listener a service runs on: its own, or the shared
// one of the services routed by SNI on its address.
func (svc *serviceSpec) unitKey() string {
	if svc.routed() {
		return "sni:" + svc.listenAddress()
	}
	return svc.name
}

// errorAt is a configuration error about one of the service's keys.
func (cf *configFile) errorAt(svc *serviceSpec, key string, err error) error {
	line, ok := svc.keyLines[key]
	if !ok {
		line = svc.line
	}
	return &fileError{path: cf.path, line: line, key: key, err: err}
}

// checkClashes refuses two services on one address unless each is a server
// routed by SNI, with distinct names and at most one default.
func (cf *configFile) checkClashes() error {
	byAddr := make(map[string][]*serviceSpec)
	for _, svc := range cf.services {
		if a := svc.listenAddress(); a != "" {
			byAddr[a] = append(byAddr[a], svc)
		}
	}
	for _, svc := range cf.services {
		if svc.routed() && svc.listenAddress() == "" {
			return cf.errorAt(svc, "sni", errors.New("routing by SNI needs a listen address with a port"))
		}
	}
	for addr, group := range byAddr {
		if len(group) < 2 && !group[0].routed() {
			continue
		}
		var table sni.Table[string]
		def := ""
		if j := slices.IndexFunc(group, func(s *serviceSpec) bool { return !s.routed() }); j >= 0 {
			// blame the later of the two in the file
			other, svc := group[0], group[max(j, 1)]
			return cf.errorAt(svc, "listen", fmt.Errorf("%s is also the listen address of service %q: services share an address only when each lists sni: names", addr, other.name))
		}
		for _, svc := range group {
			if svc.isDefault {
				if def != "" {
					return cf.errorAt(svc, "default", fmt.Errorf("service %q is already the default on %s", def, addr))
				}
				def = svc.name
			}
			for _, n := range svc.sni {
				if err := table.Add(n, svc.name); err != nil {
					return cf.errorAt(svc, "sni", fmt.Errorf("%v on %s", err, addr))
				}
			}
		}
	}
	return nil
}
