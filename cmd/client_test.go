package cmd

import (
	"crypto/tls"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moat-proxy/moat/certs"
	"github.com/moat-proxy/moat/endpoint"
)

// TestClientFlagErrorsNameTheFlag: every bad client command line fails
// before anything listens, as a usage error naming the flag at fault.
func TestClientFlagErrorsNameTheFlag(t *testing.T) {
	dir := t.TempDir()
	files, err := certs.Generate(dir, []string{"127.0.0.1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	defaults := map[string]string{"--listen": "127.0.0.1:0", "--target": "127.0.0.1:6380"}
	// A file that cannot be read is a runtime failure (exit 1) that still
	// names its flag; the rest are usage errors (exit 2).
	for _, tc := range []struct {
		args    []string
		flag    string
		runtime bool
	}{
		{[]string{"--renegotiation", "sometimes"}, "--renegotiation", false},
		{[]string{"--renegotiation", "Once"}, "--renegotiation", false},
		{[]string{"--cert", files.ClientCert}, "--cert", false},
		{[]string{"--key", files.ClientKey}, "--key", false},
		{[]string{"--cert", files.ClientCert, "--key", filepath.Join(dir, "missing.key")}, "--key: key ", true},
		{[]string{"--cacert", filepath.Join(dir, "missing.pem")}, "--cacert", true},
		{[]string{"--session-cache-size", "-1"}, "--session-cache-size", false},
		{[]string{"--listen-mode", "0660"}, "--listen-mode", false}, // TCP --listen
		{[]string{"--listen", "unix:" + filepath.Join(dir, "s"), "--listen-mode", "rw"}, "--listen-mode", false},
		{[]string{"--listen", "unix:" + filepath.Join(dir, "s"), "--listen-mode", "01777"}, "--listen-mode", false},
		{[]string{"--target", "unix:" + filepath.Join(dir, "remote.sock")}, "--server-name", false},
		{[]string{"--server-name", "a\x00b.example"}, "--server-name", false},
		{[]string{"--server-name", strings.Repeat("a", 300)}, "--server-name", false},
		{[]string{"--server-name", "bad name"}, "--server-name", false},
		{[]string{"--server-name", "db..example"}, "--server-name", false},
	} {
		args := append([]string{"client"}, tc.args...)
		for flag, v := range defaults {
			if !slices.Contains(tc.args, flag) {
				args = append(args, flag, v)
			}
		}
		_, err := run(t, args...)
		want := exitUsage
		if tc.runtime {
			want = exitRuntime
		}
		if err == nil || judge(err, true).code != want || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%v: error %v, want exit code %d naming %s", tc.args, err, want, tc.flag)
		}
	}
}

// TestClientHasNoInsecureSkipVerify: server verification cannot be turned
// off from the command line.
func TestClientHasNoInsecureSkipVerify(t *testing.T) {
	_, err := run(t, "client", "--listen", "127.0.0.1:0", "--target", "127.0.0.1:6380", "--insecure-skip-verify")
	if err == nil || !strings.Contains(err.Error(), "unknown flag") {
		t.Fatalf("error %v, want unknown flag", err)
	}
}

// TestClientTLSConfig checks the configuration every connection uses:
// verification name, renegotiation policy, TLS 1.2 floor, session cache
// and a reloadable client certificate.
func TestClientTLSConfig(t *testing.T) {
	dir := t.TempDir()
	files, err := certs.Generate(dir, []string{"127.0.0.1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	target := func(s string) endpoint.Address {
		tg, err := endpoint.ParseTarget(s)
		if err != nil {
			t.Fatal(err)
		}
		return tg
	}
	for _, tc := range []struct {
		name       string
		o          clientOptions
		target     string
		serverName string
		reneg      tls.RenegotiationSupport
		cache      bool
		clientCert bool
	}{
		{"defaults, host name target", clientOptions{renegotiation: "never", sessionCacheSize: 1024}, "db.internal:6380", "db.internal", tls.RenegotiateNever, true, false},
		{"IP target", clientOptions{renegotiation: "once", sessionCacheSize: 1}, "10.0.0.7:443", "10.0.0.7", tls.RenegotiateOnceAsClient, true, false},
		{"--server-name wins", clientOptions{renegotiation: "freely", serverName: "db.internal"}, "10.0.0.7:443", "db.internal", tls.RenegotiateFreelyAsClient, false, false},
		{"--server-name an IPv6 address", clientOptions{renegotiation: "never", serverName: "2001:db8::1"}, "db.internal:443", "2001:db8::1", tls.RenegotiateNever, false, false},
		{"--server-name with underscore", clientOptions{renegotiation: "never", serverName: "my_db.internal"}, "10.0.0.7:443", "my_db.internal", tls.RenegotiateNever, false, false},
		{"--server-name with a trailing dot", clientOptions{renegotiation: "never", serverName: "db.internal."}, "10.0.0.7:443", "db.internal.", tls.RenegotiateNever, false, false},
		{"unix target with --server-name", clientOptions{renegotiation: "never", serverName: "db.internal"}, "unix:/run/db.sock", "db.internal", tls.RenegotiateNever, false, false},
		{"client certificate and CA", clientOptions{renegotiation: "never", certFile: files.ClientCert, keyFile: files.ClientKey, caFile: files.CACert}, "127.0.0.1:443", "127.0.0.1", tls.RenegotiateNever, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, src, err := tc.o.tlsConfig(target(tc.target))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.ServerName != tc.serverName || cfg.Renegotiation != tc.reneg || cfg.MinVersion != tls.VersionTLS12 || cfg.InsecureSkipVerify {
				t.Fatalf("ServerName %q Renegotiation %v MinVersion %x InsecureSkipVerify %v", cfg.ServerName, cfg.Renegotiation, cfg.MinVersion, cfg.InsecureSkipVerify)
			}
			if (cfg.ClientSessionCache != nil) != tc.cache {
				t.Fatalf("session cache %v, want %v", cfg.ClientSessionCache != nil, tc.cache)
			}
			if (cfg.RootCAs != nil) != (tc.o.caFile != "") {
				t.Fatalf("RootCAs set %v with --cacert %q", cfg.RootCAs != nil, tc.o.caFile)
			}
			if !tc.clientCert {
				if src != nil || cfg.GetClientCertificate != nil || len(cfg.Certificates) > 0 {
					t.Fatal("a client certificate is configured without --cert")
				}
				return
			}
			got, err := cfg.GetClientCertificate(&tls.CertificateRequestInfo{})
			if err != nil || got != src.Certificate() || len(got.Certificate) == 0 {
				t.Fatalf("GetClientCertificate: %v, %v", got, err)
			}
		})
	}
}
