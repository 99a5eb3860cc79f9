package cmd

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/moat-proxy/moat/certs"
	"github.com/moat-proxy/moat/internal/boundedfile"
	"github.com/moat-proxy/moat/metrics"
	"github.com/moat-proxy/moat/proxy"
	"github.com/moat-proxy/moat/runner"
	"github.com/moat-proxy/moat/sni"
	"github.com/moat-proxy/moat/status"
)

// A unit is one listener and the services on it: one service, or several
// routed by SNI. The runner runs units; a reload compares them by what the
// file says about their services, and rebuilds only those that differ.

// member is one service of the file, built: its proxy settings, its
// certificates, and how its readiness is judged.
type member struct {
	spec       *serviceSpec
	cfg        proxy.Config
	src        *certs.Source
	onReload   func(error)
	crl        *crlWatch // nil without --crl
	upstreamUp func(context.Context) error
}

// unit is one listener with its services.
type unit struct {
	key      string
	listen   string // the listen address written out one way ("" for port 0)
	members  []*member
	settings string
	cfg      proxy.Config // the listener's
	server   *proxy.Server
}

// plan is what a reading of the file changes: the units to start or
// rebuild, and those to stop.
type plan struct {
	cf         *configFile
	sum        [sha256.Size]byte
	units      []*unit
	gone       []string         // keys of running units the file no longer has
	old        map[string]*unit // the running units
	handedOver map[*unit]bool   // running units whose socket went to a new unit
	added      []string         // service names, for the log
	changed    []string
	removed    []string
	unchanged  int
}

// plan builds every service of cf that is new or changed: certificates
// loaded and targets resolved, without binding.
func (t *tunnels) plan(ctx context.Context, cf *configFile) (*plan, error) {
	data, _ := boundedfile.Read(cf.path, boundedfile.MaxConfig)
	p := &plan{cf: cf, sum: sha256.Sum256(data), old: t.units, handedOver: make(map[*unit]bool)}
	groups, order := make(map[string][]*serviceSpec), []string{}
	for _, svc := range cf.services {
		k := svc.unitKey()
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], svc)
	}
	oldNames := make(map[string]bool)
	for _, u := range t.units {
		for _, m := range u.members {
			oldNames[m.spec.name] = true
		}
	}
	for _, key := range order {
		specs := groups[key]
		settings := unitSettings(specs)
		if old, ok := t.units[key]; ok && old.settings == settings {
			p.unchanged += len(specs)
			for _, s := range specs {
				delete(oldNames, s.name)
			}
			continue
		}
		u := &unit{key: key, listen: specs[0].listenAddress(), settings: settings}
		for _, s := range specs {
			m, err := t.prepareMember(ctx, cf, s)
			if err != nil {
				return nil, err
			}
			u.members = append(u.members, m)
			if oldNames[s.name] {
				p.changed = append(p.changed, s.name)
				delete(oldNames, s.name)
			} else {
				p.added = append(p.added, s.name)
			}
		}
		u.cfg = listenerConfig(u.members, t.log.With().Str("service", key).Logger(), t.metrics.For(key))
		p.units = append(p.units, u)
	}
	for key := range t.units {
		if _, ok := groups[key]; !ok {
			p.gone = append(p.gone, key)
		}
	}
	for name := range oldNames {
		p.removed = append(p.removed, name)
	}
	return p, nil
}

func unitSettings(specs []*serviceSpec) string {
	var b strings.Builder
	for _, s := range specs {
		b.WriteString("name=" + s.name + "\n" + s.settings + "\n\n")
	}
	return b.String()
}

// prepareMember puts one service through the same checks and building as
// its mode's command line, with a logger and metrics of its own.
func (t *tunnels) prepareMember(ctx context.Context, cf *configFile, s *serviceSpec) (*member, error) {
	log := t.log.With().Str("service", s.name).Logger()
	cfg, src, err := s.mode.common.prepare(ctx, log, s.mode.configure)
	if err != nil {
		key, why := blamedFlag(err)
		at := cf.errorAt(s, key, why)
		if errors.As(err, new(usageError)) {
			return nil, usageError{at} // a value in the file, as a flag's would be
		}
		return nil, at // a file or address the service names: a runtime failure
	}
	m := t.metrics.For(s.name)
	cfg.Observer = m
	if src != nil {
		m.CertificateLoaded(src.NotAfter())
	}
	logReload := reloadLogger(log, src)
	mb := &member{
		spec: s, cfg: cfg, src: src, crl: s.mode.common.crl.watch(log, m),
		onReload: func(err error) {
			m.Reload(err)
			if err == nil && src != nil {
				m.CertificateLoaded(src.NotAfter())
			}
			logReload(err)
		},
		upstreamUp: status.Cached(upstreamCheckTTL, dialCheck(cfg.Target.Address(), s.mode.common.status.proxyProtocol)),
	}
	if mb.crl != nil && src != nil && src.FromWorkloadAPI() {
		mb.onReload = mb.crl.followBundle(mb.onReload)
	}
	return mb, nil
}

// blamedFlag is the flag a service's error names, which is the key of the
// file at fault, and the error without the flag; an error that names no
// flag is blamed on the service as a whole.
func blamedFlag(err error) (string, error) {
	var b *blame
	if errors.As(err, &b) {
		return b.flag, b.err
	}
	return "", err
}

// listenerConfig is the proxy configuration of a unit's listener: its one
// service's, or, for services routed by SNI, one that picks the service
// inside the handshake. What happens there before a service is picked
// (refusals, evictions, names no service answers to) is logged and
// counted under the listener's own name, log and obs.
func listenerConfig(members []*member, log zerolog.Logger, obs proxy.Observer) proxy.Config {
	if !members[0].spec.routed() {
		return members[0].cfg
	}
	var table sni.Table[*proxy.Config]
	lead := members[0]
	for _, m := range members {
		route := proxy.NewRoute(m.cfg)
		for _, n := range m.spec.sni {
			table.Add(n, route) // checkClashes refused duplicates
		}
		if m.spec.isDefault {
			table.SetDefault(route)
			lead = m
		}
	}
	cfg := lead.cfg
	// No certificate at all makes crypto/tls answer unrecognized_name;
	// without tickets a TLS 1.3 resumption cannot skip that.
	unknown := &tls.Config{MinVersion: tls.VersionTLS12, SessionTicketsDisabled: true}
	cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12, GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		route, ok := table.Match(hello.ServerName)
		if !ok {
			return unknown, nil
		}
		return configFor(route.TLS, hello)
	}}
	cfg.Route = func(name string) *proxy.Config {
		route, _ := table.Match(name)
		return route
	}
	cfg.Observer, cfg.Log = preRoute{obs}, log
	return cfg
}

// configFor is the configuration a service's own TLS config answers a
// ClientHello with (crypto/tls consults GetConfigForClient once, on the
// listener's config).
func configFor(c *tls.Config, hello *tls.ClientHelloInfo) (*tls.Config, error) {
	if c.GetConfigForClient != nil {
		if r, err := c.GetConfigForClient(hello); err != nil || r != nil {
			return r, err
		}
	}
	return c, nil
}

// preRoute counts what happens on a shared listener before the handshake
// names a service (refusals, evictions, failed handshakes) for the
// listener; connections count for the service they are routed to.
type preRoute struct{ lead proxy.Observer }

func (preRoute) Accepted()               {}
func (p preRoute) Refused(l proxy.Limit) { p.lead.Refused(l) }
func (p preRoute) Evicted(l proxy.Limit) { p.lead.Evicted(l) }
func (preRoute) DialFailed(error)        {}
func (preRoute) Relayed(int, int)        {}
func (preRoute) Closed(*proxy.Summary)   {}
func (p preRoute) Handshake(cs *tls.ConnectionState, took time.Duration, err error) {
	if err != nil {
		p.lead.Handshake(cs, took, err)
	}
}

var _ proxy.Observer = preRoute{}
var _ proxy.Observer = (*metrics.Metrics)(nil)

// bind makes each unit's server: on the socket of the running unit that
// listened on the same address, if any, so that it never stops accepting;
// on a new socket otherwise. Nothing is left behind when one fails.
func (p *plan) bind() error {
	byAddr := make(map[string]*unit)
	for _, u := range p.old {
		if u.listen != "" {
			byAddr[u.listen] = u
		}
	}
	for i, u := range p.units {
		cfg := u.cfg
		if old := byAddr[u.listen]; old != nil && u.listen != "" {
			h, err := old.server.HandOver()
			if err != nil {
				p.discardFirst(i)
				return err
			}
			cfg.Inherit = h
			p.handedOver[old] = true
		}
		srv, err := proxy.New(cfg)
		if err != nil {
			cfg.Inherit.Close()
			p.discardFirst(i)
			return p.cf.errorAt(u.members[0].spec, "listen", err)
		}
		u.server = srv
	}
	return nil
}

// discardFirst closes the servers bind made for the first n units, when
// a later one fails.
func (p *plan) discardFirst(n int) {
	for _, u := range p.units[:n] {
		if u.server != nil {
			u.server.Discard()
			u.server = nil
		}
	}
}

// service is the unit as the runner runs it.
func (u *unit) service() runner.Service {
	return runner.Service{Name: u.key, Server: u.server, Certificates: memberCerts(u.members), Target: memberTargets(u.members),
		ReloadEvery: u.reloadEvery()}
}

// reloadEvery is the shortest --timed-reload of the unit's services (0 when
// none asks for one).
func (u *unit) reloadEvery() time.Duration {
	var d time.Duration
	for _, m := range u.members {
		if r := m.spec.mode.common.ghost.timedReload; r > 0 && (d == 0 || r < d) {
			d = r
		}
	}
	return d
}

func (u *unit) shutdownTimeout() time.Duration {
	var d time.Duration
	for _, m := range u.members {
		d = max(d, m.spec.mode.common.shutdownTimeout)
	}
	return d
}

func (u *unit) shutdownDelay() time.Duration {
	var d time.Duration
	for _, m := range u.members {
		d = max(d, m.spec.mode.common.shutdownDelay)
	}
	return d
}

// memberCerts reloads and watches the certificates of a unit's services,
// each reporting to its own service.
type memberCerts []*member

func (g memberCerts) Reload() error {
	for _, m := range g {
		if m.src != nil {
			m.onReload(m.src.Reload())
		}
		if m.crl != nil {
			m.crl.report(m.crl.Reload())
		}
	}
	return nil // reported by each service
}

func (g memberCerts) Watch(ctx context.Context, _ func(error)) {
	var wg sync.WaitGroup
	for _, m := range g {
		if m.src != nil {
			wg.Go(func() { m.src.Watch(ctx, m.onReload) })
		}
		if m.crl != nil {
			wg.Go(func() { m.crl.Watch(ctx, m.crl.report) })
		}
	}
	wg.Wait()
}

// memberTargets keeps the targets of a unit's services resolved.
type memberTargets []*member

func (g memberTargets) KeepResolved(every time.Duration, stop <-chan struct{}) {
	var wg sync.WaitGroup
	for _, m := range g {
		wg.Go(func() { m.cfg.Target.KeepResolved(every, stop) })
	}
	wg.Wait()
}

func (g memberTargets) String() string {
	var names []string
	for _, m := range g {
		names = append(names, m.cfg.Target.String())
	}
	return strings.Join(names, ",")
}
