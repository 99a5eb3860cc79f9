package charttest

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// placeCRL writes at path an empty CRL signed by the CA of a `moat certs
// generate` directory, so that a rendered --crl loads under --dry-run.
func placeCRL(t *testing.T, path, pki string) {
	t.Helper()
	ca, err := tls.LoadX509KeyPair(filepath.Join(pki, "ca.crt"), filepath.Join(pki, "ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Leaf, ca.PrivateKey.(interface {
		Public() crypto.PublicKey
		Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error)
	}))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, der, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCRLFromConfigMapMountedWhole: mtls.crl mounts the whole ConfigMap (no
// items, no subPath) where the --crl paths point, so that an updated CRL
// reaches moat without a restart.
func TestCRLFromConfigMapMountedWhole(t *testing.T) {
	spec := render(t, valueSetNamed(t, "mtls-crl")).deployments()[0].Spec.Template.Spec
	var found bool
	for _, v := range spec.Volumes {
		if v.Name != "moat-crl" {
			continue
		}
		found = true
		if v.ConfigMap == nil || v.ConfigMap.Name != "shop-crls" || len(v.ConfigMap.Items) != 0 {
			t.Errorf("moat-crl volume %+v, want the whole ConfigMap shop-crls", v.VolumeSource)
		}
	}
	if !found {
		t.Fatal("no moat-crl volume")
	}
	c, _, _, err := moatContainer(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range c.VolumeMounts {
		if m.Name == "moat-crl" {
			if m.MountPath != "/etc/moat/crl" || m.SubPath != "" || !m.ReadOnly {
				t.Errorf("moat-crl mount %+v, want /etc/moat/crl, read-only, no subPath", m)
			}
			return
		}
	}
	t.Error("moat does not mount moat-crl")
}
