package cmd

import (
	"context"
	"crypto/x509"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"

	"github.com/moat-proxy/moat/certs"
	"github.com/moat-proxy/moat/metrics"
	"github.com/moat-proxy/moat/runner"
)

// crlOptions are the revocation flags of both modes.
type crlOptions struct {
	files   []string
	expired string
	list    *certs.RevocationList // loaded by load
}

func (c *crlOptions) register(f *pflag.FlagSet) {
	f.StringArrayVar(&c.files, "crl", nil, "PEM or DER certificate revocation list, signed by a CA of the CA bundle; a peer certificate (leaf or intermediate) it lists is refused (repeatable; reloaded on change and on SIGHUP)")
	f.StringVar(&c.expired, "crl-expired", "warn", "what a CRL past its nextUpdate means: warn (keep using it, log a warning) or refuse (refuse every certificate of its issuer)")
}

// load reads the --crl files, verifying each against the CA certificates
// authorities returns (read again on every reload). Without --crl it
// returns nil: no revocation checks.
func (c *crlOptions) load(authorities func() []*x509.Certificate) (*certs.RevocationList, error) {
	return c.loadWith(certs.NewRevocationList, authorities)
}

// loadFromWorkloadAPI is load for a Workload API source, whose trust bundle
// arrives after start: the files are read now, verified once the first
// SVID brings the bundle (see certs.NewPendingRevocationList), and again
// whenever the bundle rotates.
func (c *crlOptions) loadFromWorkloadAPI(src *certs.Source) (*certs.RevocationList, error) {
	return c.loadWith(certs.NewPendingRevocationList, src.CACertificates)
}

func (c *crlOptions) loadWith(newList func([]string, func() []*x509.Certificate, certs.ExpiredCRLPolicy) (*certs.RevocationList, error),
	authorities func() []*x509.Certificate) (*certs.RevocationList, error) {
	var policy certs.ExpiredCRLPolicy
	switch c.expired {
	case "warn":
		policy = certs.CRLExpiredWarn
	case "refuse":
		policy = certs.CRLExpiredRefuse
	default:
		return nil, flagError("crl-expired", "%q: want warn or refuse", c.expired)
	}
	if len(c.files) == 0 {
		return nil, nil
	}
	list, err := newList(c.files, authorities, policy)
	if err != nil {
		return nil, fileFailure("crl", "", err)
	}
	c.list = list
	return list, nil
}

// applyCRL loads the --crl files of server mode, verified against the CA
// bundle of src, into the client policy.
func (o *serverOptions) applyCRL(src *certs.Source) error {
	if len(o.common.crl.files) > 0 && o.disableAuth {
		return flagError("crl", "cannot be combined with --disable-authentication: there is no client certificate to check")
	}
	load := o.common.crl.load
	if src.FromWorkloadAPI() {
		load = func(func() []*x509.Certificate) (*certs.RevocationList, error) {
			return o.common.crl.loadFromWorkloadAPI(src)
		}
	}
	rev, err := load(src.CACertificates)
	if err != nil {
		return err
	}
	o.policy.Revocation = rev
	return nil
}

// watch starts watching the loaded lists, or returns nil when there are
// none: their metrics go to m (nil for none).
func (c *crlOptions) watch(log zerolog.Logger, m *metrics.Metrics) *crlWatch {
	if c.list == nil {
		return nil
	}
	w := newCRLWatch(c.list, log, m)
	w.refuse = c.expired == "refuse"
	if c.list.Pending() {
		log.Info().Strs("crl", c.files).Msg("revocation lists read; they are verified, and checked, once the Workload API sends the trust bundle")
		return w
	}
	w.loaded("revocation lists loaded")
	return w
}

// crlCheckInterval is how often a running moat looks for a CRL that went
// past its nextUpdate without a new file, to warn about it.
const crlCheckInterval = 30 * time.Second

// crlWatch is the --crl lists as a runner.Certificates: reloaded on SIGHUP
// and when their files change, reporting through report; it also warns,
// once per CRL, when one goes past its nextUpdate.
type crlWatch struct {
	list    *certs.RevocationList
	log     zerolog.Logger
	metrics *metrics.Metrics // nil without a status port

	refuse bool // --crl-expired=refuse

	mu     sync.Mutex
	warned map[string]time.Time // file → the nextUpdate already warned about
}

func newCRLWatch(list *certs.RevocationList, log zerolog.Logger, m *metrics.Metrics) *crlWatch {
	return &crlWatch{list: list, log: log, metrics: m, warned: map[string]time.Time{}}
}

func (w *crlWatch) Reload() error { return w.list.Reload() }

func (w *crlWatch) Watch(ctx context.Context, report func(error)) {
	go w.list.Watch(ctx, report)
	t := time.NewTicker(crlCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.warnExpired()
		}
	}
}

// report logs and counts a reload of the lists.
func (w *crlWatch) report(err error) {
	if w.metrics != nil {
		w.metrics.Reload(err)
	}
	if err != nil {
		w.log.Error().Err(err).Msg("CRL reload failed; the previous revocation lists stay in service")
		return
	}
	w.loaded("revocation lists reloaded")
}

// loaded logs the lists in service, exports their nextUpdate and warns
// about expired ones.
func (w *crlWatch) loaded(msg string) {
	next := map[string]time.Time{}
	revoked := 0
	for _, c := range w.list.CRLs() {
		revoked += c.Revoked
		if t, ok := next[c.File]; !ok || (!c.NextUpdate.IsZero() && c.NextUpdate.Before(t)) {
			next[c.File] = c.NextUpdate
		}
	}
	if w.metrics != nil {
		w.metrics.CRLsLoaded(next)
	}
	w.log.Info().Int("crls", len(w.list.CRLs())).Int("revoked_serials", revoked).Msg(msg)
	w.mu.Lock()
	w.warned = map[string]time.Time{}
	w.mu.Unlock()
	w.warnExpired()
}

func (w *crlWatch) warnExpired() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.list.Expired(time.Now()) {
		if w.warned[c.File].Equal(c.NextUpdate) {
			continue
		}
		w.warned[c.File] = c.NextUpdate
		w.log.Warn().Str("crl", c.File).Str("issuer", c.Issuer).Time("next_update", c.NextUpdate).
			Msg("CRL is past its nextUpdate; " + w.expiredConsequence())
	}
}

// expiredConsequence says what a stale CRL does under --crl-expired.
func (w *crlWatch) expiredConsequence() string {
	if w.refuse {
		return "every certificate of its issuer is refused (--crl-expired=refuse) until a fresh CRL is loaded"
	}
	return "its revocations still apply (--crl-expired=warn); publish a fresh CRL"
}

// reloadGroup is several reloadable sources as one runner.Certificates;
// each reports its own outcome, so the runner's OnReload stays nil.
type reloadGroup []reloadMember

type reloadMember struct {
	c      runner.Certificates
	report func(error)
}

func (g reloadGroup) Reload() error {
	var errs []error
	for _, m := range g {
		err := m.c.Reload()
		m.report(err)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (g reloadGroup) Watch(ctx context.Context, _ func(error)) {
	var wg sync.WaitGroup
	for _, m := range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.c.Watch(ctx, m.report)
		}()
	}
	wg.Wait()
}

// addTo makes the --crl lists part of svc's reloads, beside its
// certificates.
func (c *crlOptions) addTo(svc *runner.Service, log zerolog.Logger, status *statusOptions) {
	var m *metrics.Metrics
	if status.run != nil {
		m = status.run.metrics
	}
	w := c.watch(log, m)
	if w == nil {
		return
	}
	g := reloadGroup{{c: w, report: w.report}}
	if svc.Certificates != nil {
		report := svc.OnReload
		if report == nil {
			report = func(error) {}
		}
		if src, ok := svc.Certificates.(*certs.Source); ok && src.FromWorkloadAPI() {
			report = w.followBundle(report)
		}
		g = append(reloadGroup{{c: svc.Certificates, report: report}}, g...)
	}
	svc.Certificates, svc.OnReload = g, nil
}

// followBundle wraps a Workload API source's report: each SVID taken into
// service may bring a new trust bundle, so the CRLs are verified again
// (a no-op when neither they nor the bundle changed).
func (w *crlWatch) followBundle(report func(error)) func(error) {
	return func(err error) {
		report(err)
		if err == nil {
			w.reloadQuietly()
		}
	}
}

// reloadQuietly reloads the lists and reports only news: new lists in
// service, or a new failure.
func (w *crlWatch) reloadQuietly() {
	if changed, err := w.list.Refresh(); changed || err != nil {
		w.report(err)
	}
}
