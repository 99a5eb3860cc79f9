package cmd

import (
	"crypto/tls"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moat-proxy/moat/certs"
	"github.com/moat-proxy/moat/endpoint"
	"github.com/moat-proxy/moat/internal/testpki"
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
// verification name, renegotiation policy, TLS 1.2 floor, session cache,
// a reloadable client certificate, and a reloadable --cacert bundle (a
// Source even without a client certificate, verified by a ServerCheck in
// place of crypto/tls's fixed RootCAs).
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
		{"CA alone", clientOptions{renegotiation: "never", caFile: files.CACert}, "db.internal:443", "db.internal", tls.RenegotiateNever, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.common.crl.expired = "warn" // the flag's default
			cfg, src, err := tc.o.tlsConfig(target(tc.target))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.ServerName != tc.serverName || cfg.Renegotiation != tc.reneg || cfg.MinVersion != tls.VersionTLS12 {
				t.Fatalf("ServerName %q Renegotiation %v MinVersion %x", cfg.ServerName, cfg.Renegotiation, cfg.MinVersion)
			}
			if (cfg.ClientSessionCache != nil) != tc.cache {
				t.Fatalf("session cache %v, want %v", cfg.ClientSessionCache != nil, tc.cache)
			}
			// crypto/tls verifies against the system roots without --cacert;
			// with it, VerifyConnection does, against the bundle in service.
			withCA := tc.o.caFile != ""
			if cfg.RootCAs != nil || cfg.InsecureSkipVerify != withCA || (cfg.VerifyConnection != nil) != withCA {
				t.Fatalf("RootCAs set %v, InsecureSkipVerify %v, VerifyConnection set %v with --cacert %q",
					cfg.RootCAs != nil, cfg.InsecureSkipVerify, cfg.VerifyConnection != nil, tc.o.caFile)
			}
			if (src != nil) != (withCA || tc.clientCert) || (withCA && src.CAPool() == nil) {
				t.Fatalf("Source %v with --cacert %q", src, tc.o.caFile)
			}
			if !tc.clientCert {
				if cfg.GetClientCertificate != nil || len(cfg.Certificates) > 0 {
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

// clientHandshake runs a TLS handshake between cfg and a crypto/tls server
// presenting leaf, over loopback TCP (whose buffers, unlike net.Pipe's, let
// a client that stops reading mid-flight still send its alert), and
// returns the client's error.
func clientHandshake(t *testing.T, cfg *tls.Config, leaf *testpki.Leaf) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc, err := ln.Accept()
		if err != nil {
			return
		}
		sc.SetDeadline(time.Now().Add(10 * time.Second))
		tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{leaf.TLS()}}).Handshake()
		sc.Close()
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cc.SetDeadline(time.Now().Add(10 * time.Second))
	err = tls.Client(cc, cfg).Handshake()
	cc.Close()
	<-done
	return err
}

// writeRoot writes ca's root certificate as a PEM bundle at path, through a
// rename as an operator's tooling would.
func writeRoot(t *testing.T, path string, cas ...*testpki.CA) {
	t.Helper()
	var b []byte
	for _, ca := range cas {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})...)
	}
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// TestClientCACertChecksNamesAsCryptoTLS: with --cacert the server is
// verified by certs.ServerCheck instead of crypto/tls, so that the bundle
// can reload; every host name and IP address case must come out as
// crypto/tls's own verification decides it.
func TestClientCACertChecksNamesAsCryptoTLS(t *testing.T) {
	ca, other := testpki.NewCA(), testpki.NewCA()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	writeRoot(t, caFile, ca)
	for _, tc := range []struct {
		name       string
		leaf       *testpki.Leaf
		target     string
		serverName string
		ok         bool
	}{
		{"DNS name", ca.Issue("db.internal"), "db.internal:443", "", true},
		{"another DNS name", ca.Issue("db.internal"), "cache.internal:443", "", false},
		{"upper-case name", ca.Issue("db.internal"), "DB.Internal:443", "", true},
		{"trailing dot", ca.Issue("db.internal"), "10.0.0.7:443", "db.internal.", true},
		{"wildcard", ca.Issue("*.example.test"), "db.example.test:443", "", true},
		{"wildcard one level only", ca.Issue("*.example.test"), "a.db.example.test:443", "", false},
		{"wildcard not the bare domain", ca.Issue("*.example.test"), "example.test:443", "", false},
		{"IP target, IP SAN", ca.Issue("db.internal", "127.0.0.1"), "127.0.0.1:443", "", true},
		{"IP target, DNS SANs only", ca.Issue("db.internal"), "127.0.0.1:443", "", false},
		{"IP target, another IP SAN", ca.Issue("10.0.0.8"), "10.0.0.7:443", "", false},
		{"IPv6 target", ca.Issue("::1"), "[::1]:443", "", true},
		{"IPv6 --server-name in brackets", ca.Issue("::1"), "db.internal:443", "[::1]", true},
		{"--server-name over an IP target", ca.Issue("db.internal"), "10.0.0.7:443", "db.internal", true},
		{"--server-name an IP address", ca.Issue("10.0.0.9"), "db.internal:443", "10.0.0.9", true},
		{"another CA", other.Issue("db.internal"), "db.internal:443", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target, err := endpoint.ParseTarget(tc.target)
			if err != nil {
				t.Fatal(err)
			}
			o := clientOptions{renegotiation: "never", caFile: caFile, serverName: tc.serverName}
			o.common.crl.expired = "warn"
			cfg, _, err := o.tlsConfig(target)
			if err != nil {
				t.Fatal(err)
			}
			want := clientHandshake(t, &tls.Config{RootCAs: ca.Pool(), ServerName: cfg.ServerName}, tc.leaf)
			got := clientHandshake(t, cfg, tc.leaf)
			if (want == nil) != tc.ok {
				t.Fatalf("crypto/tls: %v, want success %v", want, tc.ok)
			}
			if (got == nil) != (want == nil) {
				t.Fatalf("moat: %v; crypto/tls: %v", got, want)
			}
		})
	}
}

// TestClientCACertReloads: the bundle of --cacert is the one in service at
// each handshake: a server of a CA the bundle lacks is refused until the
// bundle names it, and a bundle that does not parse is a failed reload
// that leaves the previous one in service.
func TestClientCACertReloads(t *testing.T) {
	ca1, ca2 := testpki.NewCA(), testpki.NewCA()
	caFile := filepath.Join(t.TempDir(), "bundle.pem")
	writeRoot(t, caFile, ca1)
	o := clientOptions{renegotiation: "never", caFile: caFile}
	o.common.crl.expired = "warn"
	target, _ := endpoint.ParseTarget("db.internal:443")
	cfg, src, err := o.tlsConfig(target)
	if err != nil {
		t.Fatal(err)
	}
	leaf := ca2.Issue("db.internal")
	if err := clientHandshake(t, cfg, leaf); err == nil {
		t.Fatal("a server of a CA outside the bundle was accepted")
	}
	writeRoot(t, caFile, ca2)
	if err := src.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := clientHandshake(t, cfg, leaf); err != nil {
		t.Fatalf("after the reload: %v", err)
	}
	if err := clientHandshake(t, cfg, ca1.Issue("db.internal")); err == nil {
		t.Fatal("a server of the CA rotated out was still accepted")
	}
	if err := os.WriteFile(caFile, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := src.Reload(); err == nil || !strings.Contains(err.Error(), caFile) {
		t.Fatalf("reload of a garbage bundle: %v, want an error naming %s", err, caFile)
	}
	if err := clientHandshake(t, cfg, leaf); err != nil {
		t.Fatalf("after the failed reload: %v", err)
	}
}
