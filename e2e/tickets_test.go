package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"testing"
)

// TestSessionTicketsFlag: by default a returning client resumes its TLS
// session (TLS 1.2 and 1.3); with --session-tickets=false every handshake
// is a full one.
func TestSessionTicketsFlag(t *testing.T) {
	f := serverFiles(t)
	up := startUpstream(t, upperEcho)
	pem, err := os.ReadFile(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	for _, tc := range []struct {
		name   string
		args   []string
		resume bool
	}{
		{"default", nil, true},
		{"off", []string{"--session-tickets=false"}, false},
	} {
		for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(fmt.Sprintf("%s %s", tc.name, tls.VersionName(version)), func(t *testing.T) {
				_, addr := moatServer(t, f, up.addr(), tc.args...)
				cfg := &tls.Config{RootCAs: roots, ServerName: "localhost", MaxVersion: version,
					ClientSessionCache: tls.NewLRUClientSessionCache(4)}
				for i, want := range []bool{false, tc.resume} {
					c, err := tls.Dial("tcp", addr, cfg)
					if err != nil {
						t.Fatal(err)
					}
					// A round trip: a TLS 1.3 ticket arrives after the handshake.
					echoLine(t, c, "ticket please")
					if got := c.ConnectionState().DidResume; got != want {
						t.Fatalf("connection %d resumed = %v, want %v", i+1, got, want)
					}
					c.Close()
				}
			})
		}
	}
}
