package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// TestOtherClients: gnutls-cli and socat (OpenSSL) clients get through
// moat with certificate verification on, and their half-close (EOF on
// stdin) still brings the upstream's answer back.
func TestOtherClients(t *testing.T) {
	f := serverFiles(t)
	up := startUpstream(t, upperEcho)
	_, addr := moatServer(t, f, up.addr())
	host, port, _ := strings.Cut(addr, ":")
	clients := map[string][]string{
		"gnutls-cli": {"--x509cafile", f.CA, "--sni-hostname", "localhost", "--verify-hostname", "localhost", "-p", port, host},
		"socat":      {"-", "OPENSSL:" + addr + ",cafile=" + f.CA + ",commonname=localhost,verify=1"},
	}
	for name, args := range clients {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(needTool(t, name), args...)
			cmd.Stdin = strings.NewReader("through " + name + "\n")
			out, err := cmd.CombinedOutput()
			if !strings.Contains(string(out), strings.ToUpper("through "+name)) {
				t.Fatalf("%s: no answer through moat (err %v):\n%s", name, err, out)
			}
		})
	}
}
