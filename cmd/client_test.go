package cmd

import (
	"crypto/tls"
	"errors"
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
	for _, tc := range []struct {
		args []string
		flag string
	}{
		{[]string{"--renegotiation", "sometimes"}, "--renegotiation"},
		{[]string{"--renegotiation", "Once"}, "--renegotiation"},
		{[]string{"--cert", files.ClientCert}, "--cert"},
		{[]string{"--key", files.ClientKey}, "--key"},
		{[]string{"--cert", files.ClientCert, "--key", filepath.Join(dir, "missing.key")}, "--key: key "},
		{[]string{"--cacert", filepath.Join(dir, "missing.pem")}, "--cacert"},
		{[]string{"--session-cache-size", "-1"}, "--session-cache-size"},
		{[]string{"--listen-mode", "0660"}, "--listen-mode"}, // TCP --listen
		{[]string{"--listen", "unix:" + filepath.Join(dir, "s"), "--listen-mode", "rw"}, "--listen-mode"},
		{[]string{"--listen", "unix:" + filepath.Join(dir, "s"), "--listen-mode", "01777"}, "--listen-mode"},
		{[]string{"--target", "unix:" + filepath.Join(dir, "remote.sock")}, "--server-name"},
		{[]string{"--server-name", "a\x00b.example"}, "--server-name"},
		{[]string{"--server-name", strings.Repeat("a", 300)}, "--server-name"},
		{[]string{"--server-name", "bad name"}, "--server-name"},
		{[]string{"--server-name", "db..example"}, "--server-name"},
	} {
		args := append([]string{"client"}, tc.args...)
		for flag, v := range defaults {
			if !slices.Contains(tc.args, flag) {
				args = append(args, flag, v)
			}
		}
		_, err := run(t, args...)
		var ue usageError
		if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.flag) {
			t.Errorf("%v: error %v, want a usage error naming %s", tc.args, err, tc.flag)
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
