package certs

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// secretVolume builds what the kubelet mounts for a TLS Secret:
//
//	..2026_11_22_01_00_00.1234/tls.crt (and tls.key)
//	..data -> ..2026_11_22_01_00_00.1234
//	tls.crt -> ..data/tls.crt (and tls.key)
type secretVolume struct {
	dir string
	gen int
	ca  []byte // written as ca.crt by the next update unless nil
}

func newSecretVolume(t *testing.T, cert *tls.Certificate) *secretVolume {
	t.Helper()
	v := &secretVolume{dir: t.TempDir()}
	v.update(t, certPEM(cert.Leaf), keyPEM(t, cert.PrivateKey))
	for _, name := range []string{"tls.crt", "tls.key", "ca.crt"} { // ca.crt dangles until written
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(v.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return v
}

// update swaps in new content the way the kubelet's AtomicWriter does: a new
// timestamped directory, a ..data_tmp symlink to it renamed over ..data, and
// the old directory removed.
func (v *secretVolume) update(t *testing.T, crt, key []byte) {
	t.Helper()
	v.gen++
	ts := "..2026_11_22_01_00_00.123" + string(rune('0'+v.gen))
	old, _ := os.Readlink(filepath.Join(v.dir, "..data"))
	if err := os.Mkdir(filepath.Join(v.dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, filepath.Join(v.dir, ts, "tls.crt"), crt)
	writeTestFile(t, filepath.Join(v.dir, ts, "tls.key"), key)
	if v.ca != nil {
		writeTestFile(t, filepath.Join(v.dir, ts, "ca.crt"), v.ca)
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(v.dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

// watch runs Watch until the test ends and returns its reports.
// watch runs s.Watch until the test ends and returns what it reports, once
// its watches are in place.
func watch(t *testing.T, s *Source) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	reports := make(chan error, 16)
	done, watching := make(chan struct{}), make(chan struct{})
	testHookWatching = func(w *Source) {
		if w == s {
			close(watching)
		}
	}
	go func() {
		defer close(done)
		s.Watch(ctx, func(err error) { reports <- err })
	}()
	t.Cleanup(func() { cancel(); <-done; testHookWatching = nil })
	select {
	case <-watching:
	case <-done:
		t.Fatal("Watch returned before it was watching")
	case <-time.After(5 * time.Second):
		t.Fatal("Watch not in place within 5s")
	}
	return reports
}

func nextReport(t *testing.T, reports <-chan error) error {
	t.Helper()
	select {
	case err := <-reports:
		return err
	case <-time.After(3 * time.Second):
		t.Fatal("Watch reported nothing within 3s")
		return nil
	}
}

// quiet asserts Watch reports nothing for a while: longer than the debounce
// several times over.
func quiet(t *testing.T, reports <-chan error) {
	t.Helper()
	select {
	case err := <-reports:
		t.Fatalf("unexpected report %v", err)
	case <-time.After(10 * watchDebounce):
	}
}

func TestWatchNoticesSecretVolumeSwap(t *testing.T) {
	ca := newTestCA(t, "test CA")
	first, second := ca.issue(t, serverTemplate()), ca.issue(t, serverTemplate())
	vol := newSecretVolume(t, first)
	src, err := NewDirSource(vol.dir, DirOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if serial(src).Cmp(first.Leaf.SerialNumber) != 0 {
		t.Fatal("first certificate not loaded")
	}
	if src.CAPool() != nil {
		t.Fatal("CA pool without ca.crt")
	}
	reports := watch(t, src)
	start := time.Now()
	vol.update(t, certPEM(second.Leaf), keyPEM(t, second.PrivateKey))
	if err := nextReport(t, reports); err != nil {
		t.Fatalf("reload failed: %v", err)
	}
	t.Logf("swap noticed after %v", time.Since(start))
	if got := src.Certificate().Leaf.SerialNumber; got.Cmp(second.Leaf.SerialNumber) != 0 {
		t.Fatalf("serial after swap = %v, want %v", got, second.Leaf.SerialNumber)
	}
	served, _ := src.GetCertificate(&tls.ClientHelloInfo{})
	if served.Leaf.SerialNumber.Cmp(second.Leaf.SerialNumber) != 0 {
		t.Fatal("GetCertificate still serves the old certificate")
	}
	quiet(t, reports)
}

func TestWatchKeepsOldCertificateWhenReplacementIsCorrupt(t *testing.T) {
	ca := newTestCA(t, "test CA")
	good := ca.issue(t, serverTemplate())
	vol := newSecretVolume(t, good)
	src, err := NewDirSource(vol.dir, DirOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before := src.Certificate()
	reports := watch(t, src)
	vol.update(t, []byte("-----BEGIN CERTIFICATE-----\nbroken\n"), keyPEM(t, good.PrivateKey))
	err = nextReport(t, reports)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(vol.dir, "tls.crt")) {
		t.Fatalf("report = %v, want an error naming tls.crt", err)
	}
	// More events over the same bad content must not repeat the error.
	writeTestFile(t, filepath.Join(vol.dir, "unrelated"), []byte("x"))
	quiet(t, reports)
	if src.Certificate() != before {
		t.Fatal("corrupt replacement took the old certificate out of service")
	}
	if _, err := src.GetCertificate(&tls.ClientHelloInfo{}); err != nil {
		t.Fatalf("GetCertificate after failed reload: %v", err)
	}
	// Fixing the content is noticed and reported as a success.
	vol.update(t, certPEM(good.Leaf), keyPEM(t, good.PrivateKey))
	select {
	case err := <-reports:
		t.Fatalf("restoring the in-service content reported %v", err)
	case <-time.After(10 * watchDebounce):
	}
	next := ca.issue(t, serverTemplate())
	vol.update(t, certPEM(next.Leaf), keyPEM(t, next.PrivateKey))
	if err := nextReport(t, reports); err != nil || serial(src).Cmp(next.Leaf.SerialNumber) != 0 {
		t.Fatalf("recovery: err %v, serial %v", err, serial(src))
	}
}

func TestWatchIgnoresTouchesThatLeaveContentUnchanged(t *testing.T) {
	ca := newTestCA(t, "test CA")
	c := ca.issue(t, serverTemplate())
	dir := t.TempDir()
	certFile, keyFile := writeKeyPair(t, dir, "tls", c)
	src, err := NewFileSource(certFile, keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	before := src.Certificate()
	reports := watch(t, src)
	now := time.Now()
	os.Chtimes(certFile, now, now)
	os.Chmod(keyFile, 0o640)
	writeKeyPair(t, dir, "tls", c) // same bytes rewritten: IN_CLOSE_WRITE
	writeTestFile(t, filepath.Join(dir, "other.txt"), []byte("x"))
	quiet(t, reports)
	if src.Certificate() != before {
		t.Fatal("unchanged content was reloaded")
	}
}

func TestReloadSwapsOnlyOnSuccess(t *testing.T) {
	ca := newTestCA(t, "test CA")
	dir := t.TempDir()
	first := ca.issue(t, serverTemplate())
	certFile, keyFile := writeKeyPair(t, dir, "tls", first)
	caFile := filepath.Join(dir, "ca.crt")
	writeTestFile(t, caFile, certPEM(ca.cert))
	src, err := NewFileSource(certFile, keyFile, caFile)
	if err != nil {
		t.Fatal(err)
	}
	if !src.CAPool().Equal(ca.pool()) {
		t.Fatal("CA bundle not loaded")
	}
	before := src.Certificate()

	other := ca.issue(t, serverTemplate())
	writeTestFile(t, keyFile, keyPEM(t, other.PrivateKey)) // new key, old certificate
	err = src.Reload()
	if err == nil || !strings.Contains(err.Error(), "do not match") {
		t.Fatalf("Reload = %v, want mismatch", err)
	}
	if src.Reload() == nil {
		t.Fatal("explicit Reload must report a failure every time, not only the first")
	}
	if src.Certificate() != before {
		t.Fatal("failed reload replaced the certificate")
	}
	writeTestFile(t, certFile, certPEM(other.Leaf))
	if err := src.Reload(); err != nil {
		t.Fatal(err)
	}
	if serial(src).Cmp(other.Leaf.SerialNumber) != 0 || !src.NotAfter().Equal(other.Leaf.NotAfter) {
		t.Fatal("successful reload not in service")
	}
}

func TestNewSourcesRefuseBadInput(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewDirSource(dir, DirOptions{}); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "tls.crt")) {
		t.Fatalf("empty Secret dir: %v", err)
	}
	if _, err := NewFileSource("a.crt", "", ""); err == nil {
		t.Fatal("certificate without key accepted")
	}
	if _, err := NewFileSource("", "", filepath.Join(dir, "ca.crt")); err == nil || !strings.HasPrefix(err.Error(), "CA bundle ") {
		t.Fatalf("missing CA bundle: %v", err)
	}
}

func TestStaticSourceServesItsCertificate(t *testing.T) {
	cert, err := SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	cert.Leaf = nil // NewStaticSource fills it in
	src := NewStaticSource(cert)
	if src.Reload() != nil || serial(src) == nil {
		t.Fatal("static source has no leaf")
	}
	got, _ := src.GetClientCertificate(&tls.CertificateRequestInfo{})
	if got.Leaf == nil {
		t.Fatal("GetClientCertificate without leaf")
	}
	ctx, cancel := context.WithCancel(context.Background())
	returned := make(chan struct{})
	go func() { src.Watch(ctx, nil); close(returned) }()
	cancel()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch on a static source ignores its context")
	}
}

func TestWatchDirsReportsSymlinkRename(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	events := watchDirs(ctx, []string{dir})
	if events == nil {
		t.Fatal("inotify unavailable")
	}
	if err := os.Symlink("target", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	<-events // IN_CREATE of ..data_tmp
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-events:
	case <-time.After(time.Second):
		t.Fatal("rename over ..data not reported")
	}
	cancel()
	for range events { // closed once the context is done
	}
}

func TestWatchFallsBackToPollingWhenItsDirectoryIsReplaced(t *testing.T) {
	ca := newTestCA(t, "test CA")
	base := t.TempDir()
	dir := filepath.Join(base, "tls")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := writeKeyPair(t, dir, "tls", ca.issue(t, serverTemplate()))
	src, err := NewFileSource(certFile, keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	reports := watch(t, src)
	// Moving the directory away ends the inotify watch (IN_MOVE_SELF); the
	// new directory is only seen by polling.
	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	next := ca.issue(t, serverTemplate())
	writeKeyPair(t, dir, "tls", next)
	deadline := time.After(3 * pollInterval)
	for {
		select {
		case err := <-reports:
			if err != nil {
				continue // files briefly missing while the directory was swapped
			}
			if serial(src).Cmp(next.Leaf.SerialNumber) != 0 {
				t.Fatal("reported a reload without the new certificate")
			}
			return
		case <-deadline:
			t.Fatal("polling did not pick up the new directory")
		}
	}
}

// A client CA kept in a Secret of its own: --cert-dir plus --cacert. The
// separate bundle replaces the Secret's ca.crt, must exist, and reloads.
func TestDirSourceWithSeparateCA(t *testing.T) {
	serverCA, clientCA, otherCA := newTestCA(t, "server CA"), newTestCA(t, "client CA"), newTestCA(t, "other CA")
	vol := newSecretVolume(t, serverCA.issue(t, serverTemplate()))
	writeTestFile(t, filepath.Join(vol.dir, "ca.crt"), certPEM(serverCA.cert))
	caFile := filepath.Join(t.TempDir(), "bundle.pem")
	if _, err := NewDirSource(vol.dir, DirOptions{CAFile: caFile}); err == nil || !strings.Contains(err.Error(), caFile) {
		t.Fatalf("missing separate CA bundle: err = %v, want one naming %s", err, caFile)
	}
	writeTestFile(t, caFile, certPEM(clientCA.cert))
	src, err := NewDirSource(vol.dir, DirOptions{CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	if !src.CAPool().Equal(clientCA.pool()) {
		t.Fatal("CA bundle in service is not only the client CA (ca.crt leaked in?)")
	}
	reports := watch(t, src)
	writeTestFile(t, caFile+".new", certPEM(otherCA.cert))
	if err := os.Rename(caFile+".new", caFile); err != nil {
		t.Fatal(err)
	}
	if err := nextReport(t, reports); err != nil {
		t.Fatalf("reload failed: %v", err)
	}
	if !src.CAPool().Equal(otherCA.pool()) {
		t.Fatal("the separate CA bundle was not reloaded")
	}
	if src.Certificate() == nil {
		t.Fatal("the Secret's certificate went out of service")
	}
}

// --self-signed with --cacert: the certificate is fixed, the client CA
// bundle reloads, and a broken bundle is refused at start.
func TestStaticSourceWithCA(t *testing.T) {
	cert, err := SelfSigned(nil)
	if err != nil {
		t.Fatal(err)
	}
	ca := newTestCA(t, "client CA")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	writeTestFile(t, caFile, []byte("not PEM"))
	if _, err := NewStaticSourceWithCA(cert, caFile); err == nil || !strings.Contains(err.Error(), caFile) {
		t.Fatalf("unparsable CA bundle: err = %v, want one naming %s", err, caFile)
	}
	writeTestFile(t, caFile, certPEM(ca.cert))
	src, err := NewStaticSourceWithCA(cert, caFile)
	if err != nil {
		t.Fatal(err)
	}
	if src.CAPool() == nil || src.Certificate() == nil || serial(src).Cmp(cert.Leaf.SerialNumber) != 0 {
		t.Fatal("static source with CA lacks its certificate or its bundle")
	}
	other := newTestCA(t, "other CA")
	writeTestFile(t, caFile, certPEM(other.cert))
	if err := src.Reload(); err != nil {
		t.Fatal(err)
	}
	if !src.CAPool().Equal(other.pool()) {
		t.Fatal("CA bundle not reloaded")
	}
	if serial(src).Cmp(cert.Leaf.SerialNumber) != 0 {
		t.Fatal("reloading the CA bundle changed the served certificate")
	}
}

// With client authentication on, a Secret update that drops ca.crt would
// refuse every client: RequireCA makes that reload fail, and the previous
// CA bundle stays in service.
func TestDirSourceRequireCAKeepsBundleWhenCADisappears(t *testing.T) {
	ca := newTestCA(t, "test CA")
	cert := ca.issue(t, serverTemplate())
	vol := newSecretVolume(t, cert)
	if _, err := NewDirSource(vol.dir, DirOptions{RequireCA: true}); err == nil || !strings.Contains(err.Error(), filepath.Join(vol.dir, "ca.crt")) {
		t.Fatalf("no ca.crt with RequireCA: err = %v, want one naming ca.crt", err)
	}
	vol.ca = certPEM(ca.cert)
	vol.update(t, certPEM(cert.Leaf), keyPEM(t, cert.PrivateKey))
	src, err := NewDirSource(vol.dir, DirOptions{RequireCA: true})
	if err != nil {
		t.Fatal(err)
	}
	pool := src.CAPool()
	if pool == nil {
		t.Fatal("ca.crt not loaded")
	}
	reports := watch(t, src)
	renewed := ca.issue(t, serverTemplate())
	vol.ca = nil
	vol.update(t, certPEM(renewed.Leaf), keyPEM(t, renewed.PrivateKey))
	err = nextReport(t, reports)
	if err == nil || !strings.Contains(err.Error(), "ca.crt") {
		t.Fatalf("swap without ca.crt reported %v, want an error naming ca.crt", err)
	}
	if src.CAPool() != pool || serial(src).Cmp(cert.Leaf.SerialNumber) != 0 {
		t.Fatal("a swap without ca.crt replaced the material in service")
	}
}

// A client that presents no certificate still verifies servers against a
// CA bundle that rotates: NewCASource carries the bundle alone, reloads it
// on a rename over the file, and keeps the previous bundle when the new
// one does not parse. It presents nothing and has no expiry of its own.
func TestCASourceReloadsBundleAlone(t *testing.T) {
	first, second := newTestCA(t, "first CA"), newTestCA(t, "second CA")
	caFile := filepath.Join(t.TempDir(), "bundle.pem")
	if _, err := NewCASource(caFile); err == nil || !strings.Contains(err.Error(), caFile) {
		t.Fatalf("missing bundle: err = %v, want one naming %s", err, caFile)
	}
	writeTestFile(t, caFile, certPEM(first.cert))
	src, err := NewCASource(caFile)
	if err != nil {
		t.Fatal(err)
	}
	if !src.CAPool().Equal(first.pool()) || len(src.CACertificates()) != 1 {
		t.Fatal("bundle not loaded")
	}
	if src.Certificate() != nil || len(src.Certificates()) != 0 || !src.NotAfter().IsZero() {
		t.Fatal("a CA-only source has a certificate")
	}
	if c, err := src.GetClientCertificate(&tls.CertificateRequestInfo{}); err != nil || len(c.Certificate) != 0 {
		t.Fatalf("GetClientCertificate = %v, %v; want an empty certificate", c, err)
	}
	if got := src.Files(); len(got) != 1 || got[0] != caFile {
		t.Fatalf("Files = %v, want the bundle alone", got)
	}

	reports := watch(t, src)
	writeTestFile(t, caFile+".new", certPEM(first.cert, second.cert))
	if err := os.Rename(caFile+".new", caFile); err != nil {
		t.Fatal(err)
	}
	if err := nextReport(t, reports); err != nil {
		t.Fatalf("reload failed: %v", err)
	}
	if len(src.CACertificates()) != 2 {
		t.Fatal("the rotated bundle is not in service")
	}
	writeTestFile(t, caFile+".new", certPEM(second.cert))
	os.Rename(caFile+".new", caFile)
	if err := nextReport(t, reports); err != nil || !src.CAPool().Equal(second.pool()) {
		t.Fatalf("reload: err %v, pool is the second CA's: %v", err, src.CAPool().Equal(second.pool()))
	}

	pool := src.CAPool()
	writeTestFile(t, caFile+".new", []byte("-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"))
	os.Rename(caFile+".new", caFile)
	if err := nextReport(t, reports); err == nil || !strings.Contains(err.Error(), caFile) {
		t.Fatalf("garbage bundle reported %v, want an error naming %s", err, caFile)
	}
	if src.Reload() == nil {
		t.Fatal("explicit Reload of a garbage bundle succeeded")
	}
	if src.CAPool() != pool {
		t.Fatal("a garbage bundle took the previous one out of service")
	}
}
