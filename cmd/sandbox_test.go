package cmd

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/moat-proxy/moat/endpoint"
)

func mustTarget(t *testing.T, s string) endpoint.Address {
	t.Helper()
	a, err := endpoint.ParseTarget(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustListen(t *testing.T, s string) endpoint.Address {
	t.Helper()
	a, err := endpoint.ParseListen(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestSandboxRulesFollowTheConfiguration(t *testing.T) {
	certDir, realDir := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(realDir, "c.pem"), []byte("x"), 0o600)
	os.Symlink(filepath.Join(realDir, "c.pem"), filepath.Join(certDir, "tls.crt"))
	os.WriteFile(filepath.Join(certDir, "tls.key"), []byte("x"), 0o600)

	r := sandboxRules(sandboxInputs{
		listens: []endpoint.Address{mustListen(t, "127.0.0.1:8443")}, targets: []endpoint.Address{mustTarget(t, "localhost:8080")},
		files:  []string{filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key")},
		status: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9090},
	})
	for _, d := range []string{certDir, realDir} {
		if !slices.Contains(r.ReadDirs, d) {
			t.Errorf("ReadDirs %v lacks %s", r.ReadDirs, d)
		}
	}
	if n := r.Network; n == nil || !slices.Equal(n.BindTCP, []uint16{8443, 9090}) || !slices.Equal(n.ConnectTCP, []uint16{8080}) || !n.DNS {
		t.Errorf("network %+v; want bind 8443 and 9090, connect 8080, DNS for a host name", n)
	}
	if len(r.ConnectUnix) != 0 || len(r.RemoveIn) != 0 || len(r.ReadFiles) != 0 {
		t.Errorf("unexpected rules %+v", r)
	}

	r = sandboxRules(sandboxInputs{listens: []endpoint.Address{mustListen(t, "unix:/run/moat/in.sock")}, targets: []endpoint.Address{mustTarget(t, "unix:/run/app/app.sock")}})
	if !slices.Equal(r.ConnectUnix, []string{"/run/app/app.sock"}) || !slices.Equal(r.RemoveIn, []string{"/run/moat"}) {
		t.Errorf("unix sides: connect %v, remove in %v", r.ConnectUnix, r.RemoveIn)
	}
	if len(r.Network.BindTCP)+len(r.Network.ConnectTCP) != 0 || r.Network.DNS {
		t.Errorf("unix sides still grant TCP: %+v", r.Network)
	}

	r = sandboxRules(sandboxInputs{listens: []endpoint.Address{mustListen(t, ":8443")}, targets: []endpoint.Address{mustTarget(t, "127.0.0.1:8080")}})
	if r.Network.DNS {
		t.Error("an IP target grants DNS")
	}
	r = sandboxRules(sandboxInputs{listens: []endpoint.Address{mustListen(t, ":8443")}, targets: []endpoint.Address{mustTarget(t, "127.0.0.1:8080")},
		unixSockets: []string{"/run/spire/agent.sock"}, openNetwork: true})
	if r.Network != nil || !slices.Equal(r.ConnectUnix, []string{"/run/spire/agent.sock"}) {
		t.Errorf("open network: %+v, unix %v; want no network rules and the extra socket", r.Network, r.ConnectUnix)
	}
}
