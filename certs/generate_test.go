package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"testing"
)

func TestGeneratedFilesWorkEndToEnd(t *testing.T) {
	dir := t.TempDir()
	files, err := Generate(dir, []string{"localhost", "127.0.0.1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{files.CAKey, files.ServerKey, files.ClientKey} {
		info, err := os.Stat(key)
		if err != nil || info.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, err %v", key, info.Mode().Perm(), err)
		}
	}
	src, err := NewFileSource(files.ServerCert, files.ServerKey, files.CACert)
	if err != nil {
		t.Fatal(err)
	}
	client, err := loadKeyPair(files.ClientCert, files.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	if len(client.Leaf.URIs) != 1 || client.Leaf.URIs[0].String() != ClientSPIFFE {
		t.Fatalf("client URIs %v", client.Leaf.URIs)
	}
	roots, _, err := LoadCAPool(files.CACert)
	if err != nil {
		t.Fatal(err)
	}
	for _, policy := range []Policy{{CNs: []string{ClientCN}}, {URIs: []string{ClientSPIFFE}}} {
		for _, name := range []string{"localhost", "127.0.0.1"} {
			// A Go client picks its certificate from the server's list of
			// acceptable CAs, so this also proves the CA is advertised.
			cfg := &tls.Config{RootCAs: roots, ServerName: name, Certificates: []tls.Certificate{*client}}
			if s, c := handshake(t, src.ServerTLSConfig(policy, true), cfg); s != nil || c != nil {
				t.Fatalf("%v via %s: server %v, client %v", policy, name, s, c)
			}
		}
	}
}

func TestGenerateRefusesToOverwrite(t *testing.T) {
	dir := t.TempDir()
	first, err := Generate(dir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(first.CACert)
	if _, err := Generate(dir, nil, false); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Generate: %v, want ErrExist", err)
	}
	after, _ := os.ReadFile(first.CACert)
	if string(before) != string(after) {
		t.Fatal("refused Generate still changed ca.crt")
	}
	if _, err := Generate(dir, nil, true); err != nil {
		t.Fatalf("forced Generate: %v", err)
	}
	after, _ = os.ReadFile(first.CACert)
	if string(before) == string(after) {
		t.Fatal("forced Generate did not replace ca.crt")
	}
	ca, _, _ := LoadCAPool(first.CACert)
	server, _ := loadKeyPair(first.ServerCert, first.ServerKey)
	if _, err := server.Leaf.Verify(x509.VerifyOptions{Roots: ca, DNSName: "::1"}); err != nil {
		t.Fatalf("regenerated server certificate does not chain to the new CA: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 6 {
		t.Fatalf("%d files in dir, want 6 (no temporary files left)", len(entries))
	}
}
