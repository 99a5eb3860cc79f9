package certs

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
)

// Source holds the certificate, key and CA bundle moat currently uses and
// reloads them from disk. All methods are safe for concurrent use; the
// tls.Config callbacks read one atomic pointer and never block on a reload.
type Source struct {
	certFile, keyFile, caFile string
	caOptional                bool             // ca.crt of a Secret may be absent
	static                    bool             // NewStaticSource: nothing to reload
	fixed                     *tls.Certificate // served as is; only the CA bundle reloads
	wl                        *workload        // NewWorkloadSource: material from the SPIFFE Workload API
	keystore                  *keystore        // certFile is a keystore: chain and key in one file

	current atomic.Pointer[material]
	more    []*Source // further key pairs served by SNI (AddKeyPairs); set before use
	sni     atomic.Pointer[sniIndex]

	mu         sync.Mutex // serialises reloads
	failedSum  [sha256.Size]byte
	failedOnce bool // failedSum is the content whose reload last failed
}

// material is one consistent generation of everything a Source serves.
type material struct {
	cert *tls.Certificate // nil when the Source only carries a CA bundle
	pool *x509.CertPool   // nil when there is no CA bundle
	cas  []*x509.Certificate
	sum  [sha256.Size]byte // of the file bytes this was parsed from
	// bundles, from the Workload API, has a trust bundle per trust domain:
	// a peer chain is verified against its own trust domain's, and pool is
	// this Source's own trust domain's. nil for every other Source.
	bundles x509bundle.Source
}

// rootsFor returns the CAs a peer's chain must reach.
func (m *material) rootsFor(leaf *x509.Certificate) (*x509.CertPool, error) {
	if m.bundles != nil {
		return svidTrustDomainPool(m.bundles, leaf)
	}
	if m.pool == nil {
		return nil, errors.New("no CA bundle loaded")
	}
	return m.pool, nil
}

// NewFileSource loads a certificate and key, and optionally a CA bundle
// (caFile ""). Certificate and key may both be "" for a Source that only
// carries a CA bundle (a client that verifies servers but has no identity).
func NewFileSource(certFile, keyFile, caFile string) (*Source, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("certificate and key must be given together")
	}
	if certFile == "" && caFile == "" {
		return nil, errors.New("no certificate, key or CA bundle given")
	}
	return load(&Source{certFile: certFile, keyFile: keyFile, caFile: caFile})
}

// NewCASource loads a CA bundle alone, reloaded like NewFileSource's files:
// what a client that presents no certificate verifies servers against. It
// has no certificate: Certificate is nil, NotAfter is zero, and
// GetClientCertificate answers with an empty certificate. A bundle that
// does not parse, at start or on a reload, is an error naming caFile.
func NewCASource(caFile string) (*Source, error) {
	if caFile == "" {
		return nil, errors.New("no CA bundle given")
	}
	return load(&Source{caFile: caFile})
}

// DirOptions adjust what NewDirSource reads besides tls.crt and tls.key.
type DirOptions struct {
	// CAFile, when not "", replaces the Secret's ca.crt: a client CA kept in
	// a Secret of its own. It must exist.
	CAFile string
	// RequireCA makes ca.crt required, at start and on every reload: a
	// server that verifies clients must not lose its CA bundle to a Secret
	// update that dropped the key (every client would be refused). The
	// reload fails instead, and the previous material stays in service.
	RequireCA bool
	// KeyPairOnly reads tls.crt and tls.key alone, never ca.crt: a further
	// key pair of a Source whose CA bundle comes from elsewhere.
	KeyPairOnly bool
}

// NewDirSource loads a Kubernetes TLS Secret mount: dir/tls.crt, dir/tls.key
// and, when present, dir/ca.crt. Unless o requires it, ca.crt may appear or
// vanish on a later reload.
func NewDirSource(dir string, o DirOptions) (*Source, error) {
	s := &Source{
		certFile:   filepath.Join(dir, "tls.crt"),
		keyFile:    filepath.Join(dir, "tls.key"),
		caFile:     filepath.Join(dir, "ca.crt"),
		caOptional: !o.RequireCA,
	}
	switch {
	case o.KeyPairOnly:
		s.caFile = ""
	case o.CAFile != "":
		s.caFile, s.caOptional = o.CAFile, false
	}
	return load(s)
}

func load(s *Source) (*Source, error) {
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// NewStaticSource serves a certificate that never changes, such as one from
// SelfSigned. Reload is a no-op and Watch only waits for its context.
func NewStaticSource(cert *tls.Certificate) *Source {
	s := &Source{static: true}
	s.current.Store(&material{cert: withLeaf(cert)})
	return s
}

// NewStaticSourceWithCA serves a certificate that never changes, such as one
// from SelfSigned, with a CA bundle read from caFile and reloaded like any
// other.
func NewStaticSourceWithCA(cert *tls.Certificate, caFile string) (*Source, error) {
	if caFile == "" {
		return nil, errors.New("no CA bundle given")
	}
	return load(&Source{fixed: withLeaf(cert), caFile: caFile})
}

func withLeaf(cert *tls.Certificate) *tls.Certificate {
	if cert == nil || cert.Leaf != nil || len(cert.Certificate) == 0 {
		return cert
	}
	c := *cert
	c.Leaf, _ = x509.ParseCertificate(c.Certificate[0])
	return &c
}

// Reload reads and parses every file. On success the new material replaces
// the old in one atomic swap; on any failure the old material stays in
// service and the error names the file at fault.
func (s *Source) Reload() error {
	errs := []error{s.reload().err}
	for _, p := range s.more {
		errs = append(errs, p.reload().err)
	}
	return errors.Join(errs...)
}

// reloadResult says what a reload did. A watcher reports err only when it is
// not a repeat, and success only when the material changed, so unrelated
// directory events log nothing.
type reloadResult struct {
	changed bool  // new material is in service
	err     error // the reload failed; the old material stays
	repeat  bool  // err is for the same content as the last failure
}

// reload swaps in new material when the files' content differs from what is
// in service.
func (s *Source) reload() reloadResult {
	if s.static || s.wl != nil { // the Workload API pushes updates itself
		return reloadResult{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	files, sum, err := s.readStable()
	if err != nil {
		return s.failed(sum, err)
	}
	if cur := s.current.Load(); cur != nil && cur.sum == sum {
		s.failedOnce = false // back to what is in service
		return reloadResult{}
	}
	m, err := s.parse(files, sum)
	if err != nil {
		return s.failed(sum, err)
	}
	s.failedOnce = false
	s.current.Store(m)
	return reloadResult{changed: true}
}

// failed remembers which content failed, so that the same failure seen again
// is marked as a repeat.
func (s *Source) failed(sum [sha256.Size]byte, err error) reloadResult {
	repeat := s.failedOnce && s.failedSum == sum
	s.failedOnce, s.failedSum = true, sum
	return reloadResult{err: err, repeat: repeat}
}

// fileSet is the raw bytes of one read of a Source's files.
type fileSet struct{ cert, key, ca []byte }

// readStable reads all files until two consecutive reads agree. A Kubernetes
// Secret update renames ..data between any two of our reads; reading twice
// keeps a new tls.crt from being paired with an old tls.key.
func (s *Source) readStable() (fileSet, [sha256.Size]byte, error) {
	prev, prevSum, err := s.readAll()
	for range 3 {
		if err != nil {
			return prev, prevSum, err
		}
		var next fileSet
		var sum [sha256.Size]byte
		next, sum, err = s.readAll()
		if err == nil && sum == prevSum {
			return next, sum, nil
		}
		prev, prevSum = next, sum
	}
	return prev, prevSum, err
}

func (s *Source) readAll() (fileSet, [sha256.Size]byte, error) {
	var f fileSet
	var err error
	h := sha256.New()
	if s.keystore != nil {
		if f.cert, err = readFile(RoleKeystore, s.certFile); err != nil {
			return f, errSum(err), err
		}
	} else if s.certFile != "" {
		if f.cert, err = readFile(RoleCertificate, s.certFile); err != nil {
			return f, errSum(err), err
		}
		if f.key, err = readFile(RoleKey, s.keyFile); err != nil {
			return f, errSum(err), err
		}
	}
	if s.caFile != "" {
		f.ca, err = readFile(RoleCABundle, s.caFile)
		if err != nil && !(s.caOptional && errors.Is(err, fs.ErrNotExist)) {
			return f, errSum(err), err
		}
	}
	// Length prefixes keep moving bytes from one file to the next from
	// hashing the same.
	for _, b := range [][]byte{f.cert, f.key, f.ca} {
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return f, sum, nil
}

// errSum stands in for a content hash when a file could not be read, so a
// missing file is reported once rather than on every event.
func errSum(err error) [sha256.Size]byte { return sha256.Sum256([]byte(err.Error())) }

func (s *Source) parse(f fileSet, sum [sha256.Size]byte) (*material, error) {
	m := &material{cert: s.fixed, sum: sum}
	var err error
	if s.keystore != nil {
		if m.cert, err = s.keystore.parse(s.certFile, f.cert); err != nil {
			return nil, err
		}
	} else if s.certFile != "" {
		if m.cert, err = parseKeyPair(s.certFile, f.cert, s.keyFile, f.key); err != nil {
			return nil, err
		}
	}
	if len(f.ca) > 0 || (s.caFile != "" && !s.caOptional) {
		if m.pool, m.cas, err = parseCAPool(s.caFile, f.ca); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Certificate returns the certificate in service (nil for a CA-only Source).
func (s *Source) Certificate() *tls.Certificate { return s.current.Load().cert }

// CAPool returns the CA bundle in service, or nil if there is none.
func (s *Source) CAPool() *x509.CertPool { return s.current.Load().pool }

// CACertificates returns the certificates of the CA bundle in service (nil
// if there is none), for checking the signatures of CRLs. The slice is
// shared: do not modify it.
func (s *Source) CACertificates() []*x509.Certificate { return s.current.Load().cas }

// GetCertificate is a tls.Config.GetCertificate that serves the certificate
// in service at the moment of the handshake; with further key pairs, the
// one chosen by the client's server name (see sniIndex.pick).
func (s *Source) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := s.Certificate()
	if c == nil {
		return nil, errors.New("certs: no certificate loaded")
	}
	if len(s.more) == 0 {
		return c, nil
	}
	return s.index().pick(hello), nil
}

// AddKeyPairs makes s serve the key pairs of more besides its own, chosen
// by SNI: its own certificate stays the default, for clients that send no
// server name or one no pair covers. Each of more reloads on its own, as
// s does (a pair that fails to load keeps its previous material, and the
// others are not held back); only s's CA bundle is used. Call it before s
// is used.
func (s *Source) AddKeyPairs(more ...*Source) { s.more = append(s.more, more...) }

// Certificates returns every certificate in service, the default first.
func (s *Source) Certificates() []*tls.Certificate {
	out := make([]*tls.Certificate, 0, 1+len(s.more))
	if c := s.Certificate(); c != nil {
		out = append(out, c)
	}
	for _, p := range s.more {
		if c := p.Certificate(); c != nil {
			out = append(out, c)
		}
	}
	return out
}

// GetClientCertificate is a tls.Config.GetClientCertificate. A CA-only
// Source answers with an empty certificate, which tells the server "none".
func (s *Source) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if c := s.Certificate(); c != nil {
		return c, nil
	}
	return &tls.Certificate{}, nil
}

// NotAfter is the expiry of the certificate in service (zero if none), for
// an expiry metric; with several key pairs, the soonest.
func (s *Source) NotAfter() time.Time {
	var soonest time.Time
	for _, c := range s.Certificates() {
		if c.Leaf != nil && (soonest.IsZero() || c.Leaf.NotAfter.Before(soonest)) {
			soonest = c.Leaf.NotAfter
		}
	}
	return soonest
}

// files lists the paths a watcher must look after.
func (s *Source) files() []string {
	var out []string
	for _, p := range []string{s.certFile, s.keyFile, s.caFile} {
		if p != "" {
			out = append(out, p)
		}
	}
	for _, more := range s.more {
		out = append(out, more.Files()...)
	}
	return out
}
