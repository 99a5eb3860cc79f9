package certs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestCheckServerName(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	name253 := strings.Join([]string{label63, label63, label63, strings.Repeat("b", 61)}, ".")
	cases := []struct {
		name string
		ok   bool
	}{
		{"", true}, // no SNI sent
		{"localhost", true},
		{"api.example.com", true},
		{"API.Example.COM", true},
		{"xn--bcher-kva.example", true},
		{"a-b.c-d.example", true},
		{"my_service.internal", true},     // underscore: allowed, see CheckServerName
		{"_acme-challenge.example", true}, // leading underscore
		{"10.0.0.1", true},                // IPv4 literal: allowed
		{"2001:db8::1", true},             // IPv6 literal: allowed
		{"::1", true},
		{label63 + ".example", true},
		{name253, true},
		{"1.2.3.999", true}, // not an address, but LDH

		{name253 + "b", false}, // 254 bytes
		{strings.Repeat("a", 60000), false},
		{strings.Repeat("a", 64) + ".example", false},
		{"a\x00b.example", false},
		{"example.com\x00.evil", false},
		{"exa mple.com", false},
		{"example.com.", false},
		{".example.com", false},
		{"a..example", false},
		{".", false},
		{"-a.example", false},
		{"a-.example", false},
		{"*.example.com", false},
		{"bücher.example", false},
		{"\xff.example", false},
		{"a\nb", false},
		{"fe80::1%eth0", false},
		{"[::1]", false},
		{"example.com:443", false},
		{"a/b", false},
	}
	for _, tc := range cases {
		err := CheckServerName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("CheckServerName(%.40q) = %v, want ok %v", tc.name, err, tc.ok)
		}
		if err != nil && len(err.Error()) > 120 {
			t.Errorf("CheckServerName(%.40q): error of %d bytes, want a short one: %q", tc.name, len(err.Error()), err)
		}
	}
}

// FuzzCheckServerName: whatever the input, an accepted name is short,
// printable ASCII, and carries no byte that could break a log line or a
// header; and the check never panics.
func FuzzCheckServerName(f *testing.F) {
	for _, s := range []string{"", "localhost", "a.b.c", "10.0.0.1", "::1", "a\x00b", "a..b", "my_svc.x", "-a", strings.Repeat("a", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if CheckServerName(name) != nil {
			return
		}
		if len(name) > MaxServerNameLen {
			t.Fatalf("accepted %d bytes", len(name))
		}
		for i := 0; i < len(name); i++ {
			if b := name[i]; b <= ' ' || b >= 0x7f || b == '\\' || b == '"' {
				t.Fatalf("accepted byte %#02x in %q", b, name)
			}
		}
		if strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
			t.Fatalf("accepted %q", name)
		}
	})
}

// TestServerTLSConfigRefusesBadServerName: a client sending a server name
// CheckServerName refuses gets unrecognized_name (112) in TLS 1.3 and 1.2,
// with and without client authentication, and the server's error is a
// *ServerNameError; a good name still works in each configuration.
func TestServerTLSConfigRefusesBadServerName(t *testing.T) {
	f := newMTLSFixture(t)
	cert := f.ca.issue(t, clientTemplate(nil))
	for _, auth := range []bool{true, false} {
		server := f.src.ServerTLSConfig(webPolicy, auth)
		for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
			for _, name := range []string{strings.Repeat("a", 60000), "a\x00b.example", "bad name", strings.Repeat("a", 64)} {
				t.Run(fmt.Sprintf("auth=%v/%s/%.12q", auth, tls.VersionName(version), name), func(t *testing.T) {
					client := f.clientConfig(cert, version)
					client.ServerName, client.InsecureSkipVerify = name, true // crypto/tls sends the name as given
					serverErr, clientErr := handshake(t, server, client)
					if _, ok := AsServerNameError(serverErr); !ok {
						t.Errorf("server error %v, want a ServerNameError", serverErr)
					}
					if _, ok := AsAuthError(serverErr); ok {
						t.Errorf("server error %v is also an AuthError", serverErr)
					}
					if got, ok := remoteAlert(clientErr); !ok || got != 112 {
						t.Errorf("client error %v, want alert unrecognized_name (112)", clientErr)
					}
				})
			}
			t.Run(fmt.Sprintf("auth=%v/%s/good", auth, tls.VersionName(version)), func(t *testing.T) {
				if s, c := handshake(t, server, f.clientConfig(cert, version)); s != nil || c != nil {
					t.Fatalf("server %v, client %v", s, c)
				}
			})
		}
	}
}

// anyNameCache offers the one session it holds whatever server name the
// client asks it for, as a hostile client can.
type anyNameCache struct{ s *tls.ClientSessionState }

func (c *anyNameCache) Get(string) (*tls.ClientSessionState, bool) { return c.s, c.s != nil }
func (c *anyNameCache) Put(_ string, s *tls.ClientSessionState) {
	if s != nil {
		c.s = s
	}
}

// TestBadServerNameCannotResumeASession: a TLS 1.3 client that got a
// session ticket under a good name and offers it with a bad one is refused
// all the same: resumption skips picking a certificate, where the refusal
// happens, so the refusing config must not accept tickets.
func TestBadServerNameCannotResumeASession(t *testing.T) {
	f := newMTLSFixture(t)
	server := f.src.ServerTLSConfig(Policy{}, false)
	cache := &anyNameCache{}
	client := f.clientConfig(nil, tls.VersionTLS13)
	client.ClientSessionCache = cache
	if s, c := handshake(t, server, client); s != nil || c != nil || cache.s == nil {
		t.Fatalf("first handshake: server %v, client %v, ticket %v", s, c, cache.s != nil)
	}
	client = client.Clone()
	client.ServerName, client.InsecureSkipVerify = "a\x00b.example", true
	serverErr, clientErr := handshake(t, server, client)
	if _, ok := AsServerNameError(serverErr); !ok {
		t.Fatalf("server error %v, want a ServerNameError", serverErr)
	}
	if got, ok := remoteAlert(clientErr); !ok || got != 112 {
		t.Fatalf("client error %v, want alert unrecognized_name (112)", clientErr)
	}
}

func TestAsServerNameError(t *testing.T) {
	raw := errors.New("tls: no certificates configured")
	for _, tc := range []struct {
		err error
		ok  bool
	}{
		{nil, false},
		{raw, true},
		{fmt.Errorf("handshake: %w", raw), true},
		{&ServerNameError{Err: raw}, true},
		{errors.New("certs: no certificate loaded"), false},
		{&AuthError{Reason: ReasonNoCert}, false},
	} {
		if _, ok := AsServerNameError(tc.err); ok != tc.ok {
			t.Errorf("AsServerNameError(%v) = %v, want %v", tc.err, ok, tc.ok)
		}
	}
}
