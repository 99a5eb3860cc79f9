package certs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Revocation lists (--crl). A RevocationList holds the CRLs of one or more
// files, PEM (any number of "X509 CRL" blocks) or DER (one CRL), each of
// which must be signed by a CA of the trust bundle: a CRL from anyone else
// could revoke nothing legitimately, so loading one is an error, not a
// silent no-op. A peer certificate, leaf or intermediate, is revoked when a
// CRL whose issuer is the certificate's issuer in the verified chain (same
// subject, same key) lists its serial number. Certificates whose issuer has
// no CRL are not checked: a CRL speaks only for its issuer.
//
// Like Source, the lists in service sit behind one atomic pointer: a
// reload that fails (a file that does not parse, a signature that does not
// verify) keeps the previous lists.

// ExpiredCRLPolicy says what a CRL past its nextUpdate means.
type ExpiredCRLPolicy uint8

// The policies for a CRL past its nextUpdate.
const (
	// CRLExpiredWarn keeps using an expired CRL: the revocations it lists
	// still hold, and a missing update is a monitoring matter (the gauge
	// moat_crl_next_update_timestamp_seconds).
	CRLExpiredWarn ExpiredCRLPolicy = iota
	// CRLExpiredRefuse refuses every certificate the expired CRL speaks
	// for: revocations issued since cannot be known.
	CRLExpiredRefuse
)

// RevocationList is a reloadable set of CRLs. All methods are safe for
// concurrent use; Check reads one atomic pointer.
type RevocationList struct {
	files       []string
	authorities func() []*x509.Certificate
	expired     ExpiredCRLPolicy

	current atomic.Pointer[crlSet]

	mu         sync.Mutex // serialises reloads
	failedSum  [sha256.Size]byte
	failedOnce bool
}

// crlSet is one generation of parsed CRLs.
type crlSet struct {
	sum    [sha256.Size]byte // of the CRL files' bytes
	casSum [sha256.Size]byte // of the CAs they were verified against
	lists  []*crl
}

// crl is one parsed CRL and the CA whose key signed it.
type crl struct {
	file       string
	signer     *x509.Certificate
	thisUpdate time.Time
	nextUpdate time.Time // zero: the CRL sets none
	revoked    map[string]struct{}
}

// CRLInfo describes one CRL in service, for logs and metrics.
type CRLInfo struct {
	File       string
	Issuer     string
	NextUpdate time.Time // zero when the CRL has none
	Revoked    int       // serial numbers listed
}

// NewRevocationList loads the CRLs in files. authorities returns the CA
// certificates of the trust bundle in service (the CRLs' signers must be
// among them); it is called on every load, so a trust bundle that reloads
// is followed. An error names the file at fault (a *FileError of RoleCRL).
func NewRevocationList(files []string, authorities func() []*x509.Certificate, expired ExpiredCRLPolicy) (*RevocationList, error) {
	if len(files) == 0 {
		return nil, errors.New("no CRL file given")
	}
	r := &RevocationList{files: files, authorities: authorities, expired: expired}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// NewPendingRevocationList is NewRevocationList for a trust bundle that
// arrives after start (the SPIFFE Workload API's): the files are read and
// parsed now, so that a missing or broken file still stops moat at start,
// but their signatures are verified, and the lists put in service, by the
// first Reload that finds authorities. Until then Check refuses every
// chain: revocation cannot be vouched for yet.
func NewPendingRevocationList(files []string, authorities func() []*x509.Certificate, expired ExpiredCRLPolicy) (*RevocationList, error) {
	if len(files) == 0 {
		return nil, errors.New("no CRL file given")
	}
	r := &RevocationList{files: files, authorities: authorities, expired: expired}
	data, _, err := r.readStable()
	if err != nil {
		return nil, err
	}
	for i, b := range data {
		if _, err := parseCRLs(b); err != nil {
			return nil, &FileError{Role: RoleCRL, Path: r.files[i], Err: err}
		}
	}
	return r, nil
}

// Pending reports a list not yet verified against a trust bundle (see
// NewPendingRevocationList).
func (r *RevocationList) Pending() bool { return r.current.Load() == nil }

// errCRLsPending is Check's refusal before a pending list has been
// verified against a trust bundle.
var errCRLsPending = errors.New("the CRLs are not verified yet: no trust bundle has arrived to check their signatures")

// Reload reads and parses every file again. On success the new lists
// replace the old in one swap; on failure the old lists stay in service.
func (r *RevocationList) Reload() error { return r.reload().err }

// Refresh is Reload for a caller that reports only news: it says whether
// new lists went into service, and returns an error only when it differs
// from the last one reported.
func (r *RevocationList) Refresh() (changed bool, err error) {
	res := r.reload()
	if res.repeat {
		return false, nil
	}
	return res.changed, res.err
}

func (r *RevocationList) reload() reloadResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	data, sum, err := r.readStable()
	if err != nil {
		return r.failed(sum, err)
	}
	cas := r.authorities()
	if len(cas) == 0 && r.current.Load() == nil {
		// A pending list with no trust bundle yet: nothing to verify the
		// CRLs against; not a failure of the files.
		return reloadResult{}
	}
	casSum := certsSum(cas)
	// The same bytes verified by the same CAs parse the same; a trust
	// bundle that changed under them must be checked again.
	if cur := r.current.Load(); cur != nil && cur.sum == sum && cur.casSum == casSum {
		r.failedOnce = false
		return reloadResult{}
	}
	set, err := r.parse(data, sum, cas)
	if err != nil {
		return r.failed(sum, err)
	}
	set.casSum = casSum
	r.failedOnce = false
	r.current.Store(set)
	return reloadResult{changed: true}
}

// certsSum identifies a set of CA certificates.
func certsSum(cas []*x509.Certificate) [sha256.Size]byte {
	h := sha256.New()
	for _, c := range cas {
		fmt.Fprintf(h, "%d:", len(c.Raw))
		h.Write(c.Raw)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

func (r *RevocationList) failed(sum [sha256.Size]byte, err error) reloadResult {
	repeat := r.failedOnce && r.failedSum == sum
	r.failedOnce, r.failedSum = true, sum
	return reloadResult{err: err, repeat: repeat}
}

// readStable reads every file until two reads agree, for the same reason
// Source does: a Kubernetes volume swaps ..data between any two reads.
func (r *RevocationList) readStable() ([][]byte, [sha256.Size]byte, error) {
	prev, prevSum, err := r.readAll()
	for range 3 {
		if err != nil {
			return prev, prevSum, err
		}
		next, sum, err2 := r.readAll()
		if err2 == nil && sum == prevSum {
			return next, sum, nil
		}
		prev, prevSum, err = next, sum, err2
	}
	return prev, prevSum, err
}

func (r *RevocationList) readAll() ([][]byte, [sha256.Size]byte, error) {
	h := sha256.New()
	out := make([][]byte, len(r.files))
	for i, f := range r.files {
		b, err := readFile(RoleCRL, f)
		if err != nil {
			return nil, errSum(err), err
		}
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
		out[i] = b
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return out, sum, nil
}

func (r *RevocationList) parse(data [][]byte, sum [sha256.Size]byte, cas []*x509.Certificate) (*crlSet, error) {
	set := &crlSet{sum: sum}
	for i, b := range data {
		lists, err := parseCRLs(b)
		if err != nil {
			return nil, &FileError{Role: RoleCRL, Path: r.files[i], Err: err}
		}
		for _, l := range lists {
			signer, err := crlSigner(l, cas)
			if err != nil {
				return nil, &FileError{Role: RoleCRL, Path: r.files[i], Err: err}
			}
			c := &crl{file: r.files[i], signer: signer, thisUpdate: l.ThisUpdate, nextUpdate: l.NextUpdate,
				revoked: make(map[string]struct{}, len(l.RevokedCertificateEntries))}
			for _, e := range l.RevokedCertificateEntries {
				c.revoked[e.SerialNumber.String()] = struct{}{}
			}
			set.lists = append(set.lists, c)
		}
	}
	return set, nil
}

// parseCRLs reads every X509 CRL block of a PEM file, or one DER CRL.
func parseCRLs(b []byte) ([]*x509.RevocationList, error) {
	if block, _ := pem.Decode(b); block == nil {
		l, err := x509.ParseRevocationList(b)
		if err != nil {
			return nil, fmt.Errorf("not a PEM or DER CRL: %w", err)
		}
		return []*x509.RevocationList{l}, nil
	}
	var out []*x509.RevocationList
	for n := 1; ; n++ {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "X509 CRL" {
			continue
		}
		l, err := x509.ParseRevocationList(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d: %w", n, err)
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return nil, errors.New(`no "X509 CRL" PEM block found`)
	}
	return out, nil
}

// crlSigner finds the CA of the bundle that signed l.
func crlSigner(l *x509.RevocationList, cas []*x509.Certificate) (*x509.Certificate, error) {
	if len(cas) == 0 {
		return nil, errors.New("no CA bundle to verify its signature against")
	}
	var lastErr error
	for _, ca := range cas {
		if !bytes.Equal(ca.RawSubject, l.RawIssuer) {
			continue
		}
		if err := l.CheckSignatureFrom(ca); err != nil {
			lastErr = err
			continue
		}
		return ca, nil
	}
	if lastErr != nil {
		return nil, fmt.Errorf("signature does not verify against the CA bundle's %q: %w", shorten(l.Issuer.String()), lastErr)
	}
	return nil, fmt.Errorf("issued by %q, which is not a CA in the CA bundle", shorten(l.Issuer.String()))
}

// CRLs describes the CRLs in service.
func (r *RevocationList) CRLs() []CRLInfo {
	set := r.current.Load()
	if set == nil { // pending: not verified yet
		return nil
	}
	out := make([]CRLInfo, 0, len(set.lists))
	for _, c := range set.lists {
		out = append(out, CRLInfo{File: c.file, Issuer: c.signer.Subject.String(), NextUpdate: c.nextUpdate, Revoked: len(c.revoked)})
	}
	return out
}

// Expired returns the CRLs in service whose nextUpdate is before now.
func (r *RevocationList) Expired(now time.Time) []CRLInfo {
	var out []CRLInfo
	for _, c := range r.CRLs() {
		if !c.NextUpdate.IsZero() && c.NextUpdate.Before(now) {
			out = append(out, c)
		}
	}
	return out
}

// check says why a chain verified up to a trusted root must be refused: a
// certificate of it listed by its issuer's CRL (ReasonRevoked), or, under
// CRLExpiredRefuse, an issuer whose CRL is past its nextUpdate
// (ReasonCRLExpired). Every chain is checked: a certificate revoked on one
// path is refused whatever other path it also has.
func (r *RevocationList) check(chains [][]*x509.Certificate, now time.Time) error {
	if r == nil {
		return nil
	}
	set := r.current.Load()
	if set == nil {
		return errCRLsPending
	}
	for _, chain := range chains {
		for i := 0; i+1 < len(chain); i++ {
			if err := set.check(chain[i], chain[i+1], now, r.expired); err != nil {
				return err
			}
		}
	}
	return nil
}

// check looks c up in every CRL issuer speaks through.
func (s *crlSet) check(c, issuer *x509.Certificate, now time.Time, expired ExpiredCRLPolicy) error {
	serial := c.SerialNumber.String()
	for _, l := range s.lists {
		if !bytes.Equal(l.signer.RawSubject, issuer.RawSubject) ||
			!bytes.Equal(l.signer.RawSubjectPublicKeyInfo, issuer.RawSubjectPublicKeyInfo) {
			continue
		}
		if _, ok := l.revoked[serial]; ok {
			return &revokedError{serial: c.SerialNumber.Text(16), subject: c.Subject.String(), file: l.file}
		}
		if expired == CRLExpiredRefuse && !l.nextUpdate.IsZero() && l.nextUpdate.Before(now) {
			return &crlExpiredError{file: l.file, nextUpdate: l.nextUpdate}
		}
	}
	return nil
}

// revokedError is a certificate a CRL lists.
type revokedError struct{ serial, subject, file string }

func (e *revokedError) Error() string {
	return fmt.Sprintf("certificate %q (serial %s) is revoked by CRL %s", shorten(e.subject), e.serial, e.file)
}

// crlExpiredError is a CRL past its nextUpdate under CRLExpiredRefuse.
type crlExpiredError struct {
	file       string
	nextUpdate time.Time
}

func (e *crlExpiredError) Error() string {
	return fmt.Sprintf("CRL %s expired at %s (nextUpdate) and expired CRLs are refused", e.file, e.nextUpdate.UTC().Format(time.RFC3339))
}

// revocationReason maps a check error to its Reason. A pending list
// counts as an expired one: both are lists that cannot vouch for a chain.
func revocationReason(err error) Reason {
	var ce *crlExpiredError
	if errors.As(err, &ce) || errors.Is(err, errCRLsPending) {
		return ReasonCRLExpired
	}
	return ReasonRevoked
}

// files lists the paths a watcher must look after.
func (r *RevocationList) dirs() []string { return dirsOf(r.files) }

// Watch reloads the CRLs whenever their files change, until ctx is done,
// and tells onReload (which may be nil) about new lists (nil) or a new
// failure, as Source.Watch does. The periodic check also re-verifies the
// CRLs against the trust bundle, which may have reloaded.
func (r *RevocationList) Watch(ctx context.Context, onReload func(err error)) {
	if onReload == nil {
		onReload = func(error) {}
	}
	check := func() {
		switch res := r.reload(); {
		case res.changed:
			onReload(nil)
		case res.err != nil && !res.repeat:
			onReload(res.err)
		}
	}
	watchFiles(ctx, r.dirs(), check, func() {})
}
