package cmd

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/moat-proxy/moat/certs"
	"github.com/moat-proxy/moat/internal/boundedfile"
	"github.com/moat-proxy/moat/metrics"
	"github.com/moat-proxy/moat/runner"
	"github.com/moat-proxy/moat/status"
)

// reloadTimeout bounds what a reload may wait for, resolving the targets of
// changed services; past it the reload fails and nothing changes.
const reloadTimeout = 30 * time.Second

// runOptions are the flags of `moat run`.
type runOptions struct {
	config string
	dryRun bool
	logs   *logOptions
}

func newRunCommand(logs *logOptions) *cobra.Command {
	o := &runOptions{logs: logs}
	cmd := &cobra.Command{
		Use: "run", Args: cobra.NoArgs,
		Short: "Run the services of a configuration file, reloading it on SIGHUP or change",
		Long: `Run several tunnels in one process, each a server or a client service, from a
YAML file. Each service has a name, a mode (server or client) and the keys of
that mode's flags without the dashes (lists for flags that repeat). The file
is read again on SIGHUP and when it changes: added services start, removed
ones stop accepting and drain, changed ones serve new connections with the new
settings, and unchanged ones are not touched. A file that does not check out
is logged and counted, and the running services stay as they are.

Server services may share a listen address when each lists sni: names; the
name a client asks for picks the service (default: true takes the rest).`,
		Example: `  moat run --config /etc/moat/moat.yaml
  moat run --config moat.yaml --dry-run`,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	cmd.Flags().StringVar(&o.config, "config", "", "YAML file with the services to run (required)")
	cmd.Flags().BoolVar(&o.dryRun, "dry-run", false, "check the file, load the certificates and resolve the targets, then exit without listening")
	return cmd
}

func (o *runOptions) run(cmd *cobra.Command) error {
	if o.config == "" {
		return flagError("config", "required (a YAML file)")
	}
	cf, err := readConfig(o.config, o.logs)
	switch {
	case errors.As(err, new(*fs.PathError)):
		return fileFailure("config", o.config, err)
	case err != nil:
		return usageError{err} // what the file says is wrong, as a flag's value would be
	}
	if err := (&statusOptions{addr: cf.status, pprof: cf.pprof}).check(); err != nil {
		key, why := blamedFlag(err)
		return usageError{fmt.Errorf("%s: %s: %w", cf.path, key, why)}
	}
	logs := &logOptions{level: cf.logLevel, format: cf.logFormat}
	log, flushLog, err := logs.newLogger(cmd.ErrOrStderr())
	if err != nil {
		return usageError{fmt.Errorf("%s: %w", cf.path, err)}
	}
	defer flushLog()
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	t := &tunnels{path: cf.path, log: log, reg: prometheus.NewRegistry(), units: make(map[string]*unit), top: cf}
	t.metrics = metrics.NewServices(t.reg)
	plan, err := t.plan(ctx, cf)
	if err != nil {
		return err // classified by prepareMember
	}
	if o.dryRun {
		plan.closeWorkload()
		log.Info().Str("config", cf.path).Int("services", len(cf.services)).Msg("configuration is valid (--dry-run: not listening)")
		return nil
	}
	if err := plan.bind(); err != nil {
		return err
	}
	return t.serve(ctx, plan)
}

// tunnels is the services of a running moat run, kept in step with its
// file.
type tunnels struct {
	path    string
	log     zerolog.Logger
	reg     *prometheus.Registry
	metrics *metrics.Services
	top     *configFile // the process-wide settings moat started with
	runner  *runner.Runner

	mu    sync.Mutex // one reload at a time
	units map[string]*unit
	sum   [sha256.Size]byte // of the file as last read
	ready readiness
}

// serve runs the planned services until the shutdown.
func (t *tunnels) serve(ctx context.Context, p *plan) error {
	var svcs []runner.Service
	var timeout, delay time.Duration
	for _, u := range p.units {
		svcs = append(svcs, u.service())
		t.units[u.key] = u
		timeout, delay = max(timeout, u.shutdownTimeout()), max(delay, u.shutdownDelay())
	}
	t.sum = p.sum
	t.ready.set(t.units)
	t.runner = runner.New(runner.Options{
		Services:        svcs,
		Status:          t.statusPort(),
		ShutdownDelay:   delay,
		ShutdownTimeout: timeout,
		LimitMemory:     true,
		Notify:          true,
		Await:           p.awaitWorkload,
		Confine:         t.confine(p),
		// In its own goroutine: resolving a changed target must not hold up
		// a SIGTERM behind it.
		Reconfigure: func() { go t.reload(ctx, "SIGHUP") },
		Log:         t.log,
	})
	warnOldToolchain(t.log)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go t.watchFile(watchCtx)
	err := t.runner.Run(ctx)
	var cut *runner.CutError
	if errors.As(err, &cut) {
		return fmt.Errorf("shutdown-timeout %s reached: %w", cut.Timeout, cut.Err)
	}
	return err
}

// watchFile reloads when the file's content changes, watched as
// certificates are (inotify on its directory, a resync every few seconds);
// a check reads and hashes the file and does nothing more when it is the
// same.
func (t *tunnels) watchFile(ctx context.Context) {
	certs.WatchFiles(ctx, []string{t.path}, func() {
		data, err := boundedfile.Read(t.path, boundedfile.MaxConfig)
		if err != nil {
			return // a file being replaced; SIGHUP reports a missing file
		}
		t.mu.Lock()
		changed := sha256.Sum256(data) != t.sum
		t.mu.Unlock()
		if changed {
			t.reload(ctx, "file changed")
		}
	})
}

// reload reads the file again and moves the running services to it: all
// of it, or, when anything in it fails, none of it.
func (t *tunnels) reload(ctx context.Context, why string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	start := time.Now()
	data, _ := boundedfile.Read(t.path, boundedfile.MaxConfig)
	t.sum = sha256.Sum256(data)
	cf, err := readConfig(t.path, &logOptions{level: t.top.logLevel, format: t.top.logFormat})
	var p *plan
	if err == nil {
		p, err = t.plan(ctx, cf)
	}
	if err == nil {
		err = p.awaitWorkload(ctx)
	}
	if err == nil {
		err = p.bind()
	}
	if err == nil {
		err = t.commit(p)
	}
	t.metrics.Reload(err)
	if err != nil {
		t.log.Error().Str("config", t.path).Str("trigger", why).Str("error", oneLine(err)).
			Msg("configuration reload failed; the running services stay as they were")
		return
	}
	t.warnProcessSettings(cf)
	t.log.Info().Str("config", t.path).Str("trigger", why).Strs("added", p.added).Strs("changed", p.changed).
		Strs("removed", p.removed).Int("unchanged", p.unchanged).Dur("took", time.Since(start)).Msg("configuration reloaded")
}

// warnProcessSettings says that process-wide settings changed in the file
// take effect at the next start only.
func (t *tunnels) warnProcessSettings(cf *configFile) {
	if cf.status != t.top.status || cf.pprof != t.top.pprof || cf.logLevel != t.top.logLevel || cf.logFormat != t.top.logFormat {
		t.log.Warn().Str("config", t.path).Msg("status, enable-pprof, log-level and log-format apply from the next start; the running values stay")
	}
}

// commit hands the plan to the runner: new units start, changed ones
// replace theirs, and units no longer in the file stop.
func (t *tunnels) commit(p *plan) error {
	for i, u := range p.units {
		var err error
		if _, ok := t.units[u.key]; ok {
			err = t.runner.Replace(u.service())
		} else {
			err = t.runner.Add(u.service())
		}
		if err != nil { // only once the shutdown has begun
			for _, rest := range p.units[i:] {
				rest.server.Discard()
			}
			return err
		}
		t.units[u.key] = u
	}
	for _, key := range p.gone {
		old := t.units[key]
		timeout := old.shutdownTimeout()
		if p.handedOver[old] {
			timeout = -1 // its socket serves on in another unit: let its connections finish
		}
		if err := t.runner.Remove(key, timeout); err != nil {
			return err
		}
		delete(t.units, key)
	}
	t.ready.set(t.units)
	return nil
}

// statusPort opens the shared status port, or nil without status:.
func (t *tunnels) statusPort() func(ready func() bool) (runner.StatusPort, error) {
	if t.top.status == "" {
		return nil
	}
	return func(ready func() bool) (runner.StatusPort, error) {
		st, err := status.New(status.Config{
			Addr: t.top.status, Gatherer: t.reg, EnablePprof: t.top.pprof,
			Draining: func() bool { return !ready() },
			Services: t.ready.check,
		})
		if err != nil {
			return nil, fmt.Errorf("%s: status: %w", t.path, err)
		}
		t.log.Info().Str("status", st.Addr().String()).Bool("pprof", t.top.pprof).Msg("status port is serving")
		return st, nil
	}
}

// readiness answers /readyz for the services running now.
type readiness struct {
	mu       sync.Mutex
	services []*member
}

func (r *readiness) set(units map[string]*unit) {
	var all []*member
	for _, u := range units {
		all = append(all, u.members...)
	}
	r.mu.Lock()
	r.services = all
	r.mu.Unlock()
}

// check returns why each service (or the one named) is not ready.
func (r *readiness) check(ctx context.Context, only string) ([]string, bool) {
	r.mu.Lock()
	services := r.services
	r.mu.Unlock()
	known := only == ""
	var reasons []string
	for _, m := range services {
		if only != "" && m.spec.name != only {
			continue
		}
		known = true
		if err := m.upstreamUp(ctx); err != nil {
			reasons = append(reasons, m.spec.name+": upstream unreachable: "+strings.Join(strings.Fields(err.Error()), " "))
		}
	}
	return reasons, known
}

// awaitWorkload waits for the first SVID of every service of the plan
// that takes its certificate from the Workload API (at most each one's
// --use-workload-api-timeout), so that no service serves without one.
func (p *plan) awaitWorkload(ctx context.Context) error {
	for _, u := range p.units {
		for _, m := range u.members {
			if m.src != nil && m.src.FromWorkloadAPI() {
				if err := m.src.Await(ctx); err != nil {
					return fmt.Errorf("service %s: %w", m.spec.name, err)
				}
			}
		}
	}
	return nil
}

// closeWorkload ends the Workload API streams of a plan that will not run.
func (p *plan) closeWorkload() {
	for _, u := range p.units {
		for _, m := range u.members {
			if m.src != nil && m.src.FromWorkloadAPI() {
				m.src.Close()
			}
		}
	}
}

// confine is moat run's Confine step: the rules of every service of the
// file as it was at start, with the network left open (a reload may add
// listeners and targets, and a Landlock domain cannot be widened later) and
// the file's own directory readable. A service added by a reload reads its
// files only from directories the sandbox already allows.
func (t *tunnels) confine(p *plan) func() error {
	return func() error {
		enforced := sandboxGauge(t.reg)
		if t.top.noSandbox {
			t.log.Warn().Msg("Landlock is off (disable-landlock): moat is not confined after start-up")
			return nil
		}
		in := sandboxInputs{openNetwork: true, files: []string{t.path}}
		for _, u := range p.units {
			in.listens = append(in.listens, u.cfg.Listen)
			for _, m := range u.members {
				in.targets = append(in.targets, m.cfg.Target.Address())
				in.addSource(m.src, m.spec.mode.common.crl.files)
				preload(m.cfg)
			}
		}
		in.addNotifySocket()
		return enforceSandbox(t.log, in, enforced, "disable-landlock: true at the top level of "+t.path)
	}
}
