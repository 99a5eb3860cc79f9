package e2e

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moat-proxy/moat/internal/testpki"
)

// opensslCA is a certificate authority run by the openssl command line:
// `openssl x509 -req` issues, `openssl ca -revoke` and `openssl ca -gencrl`
// keep its revocation list, as an operator's CA would.
type opensslCA struct {
	bin, dir, cnf, crt, key string
	serial                  int
}

func newOpenSSLCA(t testing.TB) *opensslCA {
	t.Helper()
	ca := &opensslCA{bin: needTool(t, "openssl"), dir: t.TempDir(), serial: 0x1000}
	ca.crt, ca.key, ca.cnf = filepath.Join(ca.dir, "ca.crt"), filepath.Join(ca.dir, "ca.key"), filepath.Join(ca.dir, "ca.cnf")
	ca.run(t, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", ca.key, "-out", ca.crt,
		"-days", "2", "-subj", "/CN=moat e2e openssl CA", "-addext", "basicConstraints=critical,CA:true",
		"-addext", "keyUsage=critical,keyCertSign,cRLSign")
	write(t, filepath.Join(ca.dir, "index.txt"), "")
	write(t, filepath.Join(ca.dir, "crlnumber"), "1000\n")
	write(t, ca.cnf, fmt.Sprintf("[ca]\ndefault_ca = moat\n[moat]\ndatabase = %s/index.txt\ncrlnumber = %s/crlnumber\n"+
		"certificate = %s\nprivate_key = %s\ndefault_md = sha256\ndefault_crl_days = 1\n", ca.dir, ca.dir, ca.crt, ca.key))
	return ca
}

func write(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (ca *opensslCA) run(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(ca.bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// issue signs a new P-256 key for subject with the given extensions
// (openssl -extfile lines) and returns the certificate and key files.
func (ca *opensslCA) issue(t testing.TB, name, subject string, ext ...string) (crt, key string) {
	t.Helper()
	crt, key = filepath.Join(ca.dir, name+".crt"), filepath.Join(ca.dir, name+".key")
	csr, extFile := filepath.Join(ca.dir, name+".csr"), filepath.Join(ca.dir, name+".ext")
	write(t, extFile, strings.Join(ext, "\n")+"\n")
	ca.serial++
	ca.run(t, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr, "-subj", subject)
	ca.run(t, "x509", "-req", "-in", csr, "-CA", ca.crt, "-CAkey", ca.key, "-set_serial", fmt.Sprint(ca.serial),
		"-days", "1", "-extfile", extFile, "-out", crt)
	return crt, key
}

// revoke marks crt revoked in the CA's database.
func (ca *opensslCA) revoke(t testing.TB, crt string) {
	ca.run(t, "ca", "-config", ca.cnf, "-revoke", crt)
}

// gencrl writes the CA's current CRL, PEM, to out.
func (ca *opensslCA) gencrl(t testing.TB, out string) {
	ca.run(t, "ca", "-config", ca.cnf, "-gencrl", "-out", out)
}

// goCRL signs a CRL with crypto/x509, revoking serials, valid until next,
// and returns it DER encoded.
func goCRL(t testing.TB, ca *testpki.CA, next time.Time, serials ...*big.Int) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(time.Now().UnixNano()), ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: next}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func pemCRL(der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
}

// kubeDir lays out files the way a Kubernetes ConfigMap or Secret volume
// does: name -> ..data/name, ..data -> a timestamped directory, so that
// swap replaces every file at once by renaming one symlink.
type kubeDir struct {
	dir string
	gen int
}

func newKubeDir(t testing.TB, files map[string]string) *kubeDir {
	t.Helper()
	k := &kubeDir{dir: t.TempDir()}
	k.swap(t, files)
	for name := range files {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(k.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return k
}

func (k *kubeDir) path(name string) string { return filepath.Join(k.dir, name) }

// swap writes files into a new generation directory and renames ..data to
// point at it, as the kubelet does.
func (k *kubeDir) swap(t testing.TB, files map[string]string) {
	t.Helper()
	k.gen++
	gen := fmt.Sprintf("..2026_%02d", k.gen)
	if err := os.Mkdir(filepath.Join(k.dir, gen), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		write(t, filepath.Join(k.dir, gen, name), content)
	}
	tmp := filepath.Join(k.dir, "..data_tmp")
	if err := os.Symlink(gen, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(k.dir, "..data")); err != nil {
		t.Fatal(err)
	}
}

var netDialer = net.Dialer{Timeout: step}

func ioReadFull(r io.Reader, b []byte) (int, error) { return io.ReadFull(r, b) }
