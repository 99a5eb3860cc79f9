package tlspolicy

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/moat-proxy/moat/internal/testpki"
)

func TestParseGroupTakesIANAAndOpenSSLNames(t *testing.T) {
	for name, want := range map[string]tls.CurveID{
		"X25519MLKEM768": tls.X25519MLKEM768, "x25519mlkem768": tls.X25519MLKEM768,
		"SecP256r1MLKEM768": tls.SecP256r1MLKEM768, "SecP384r1MLKEM1024": tls.SecP384r1MLKEM1024,
		"X25519": tls.X25519, "P-256": tls.CurveP256, "prime256v1": tls.CurveP256, "secp256r1": tls.CurveP256,
		"P-384": tls.CurveP384, "secp384r1": tls.CurveP384, "P-521": tls.CurveP521, " P256 ": tls.CurveP256,
	} {
		got, err := ParseGroup(name)
		if err != nil || got != want {
			t.Errorf("ParseGroup(%q) = %v, %v; want %v", name, got, err, want)
		}
	}
	for _, bad := range []string{"", "X448", "ffdhe2048", "MLKEM768", "P-255"} {
		if _, err := ParseGroup(bad); !errors.Is(err, ErrUnknownGroup) {
			t.Errorf("ParseGroup(%q) = %v, want ErrUnknownGroup", bad, err)
		}
	}
}

func TestCheckRefusesPoliciesNoHandshakeCouldMeet(t *testing.T) {
	cases := []struct {
		name string
		p    Policy
		want error
	}{
		{"zero", Policy{}, nil},
		{"1.3", Policy{MinVersion: tls.VersionTLS13}, nil},
		{"pq alone", Policy{RequirePQ: true}, nil},
		{"pq with hybrid list", Policy{RequirePQ: true, Groups: []tls.CurveID{tls.SecP256r1MLKEM768, tls.X25519MLKEM768}}, nil},
		{"1.1", Policy{MinVersion: tls.VersionTLS11}, ErrBadVersion},
		{"pq with 1.2", Policy{RequirePQ: true, MinVersion: tls.VersionTLS12}, ErrPQNeedsTLS13},
		{"pq with classic group", Policy{RequirePQ: true, Groups: []tls.CurveID{tls.X25519MLKEM768, tls.X25519}}, ErrNotHybrid},
		{"duplicate", Policy{Groups: []tls.CurveID{tls.X25519, tls.CurveP256, tls.X25519}}, ErrDuplicateGroup},
	}
	for _, c := range cases {
		if err := c.p.Check(); !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
			t.Errorf("%s: Check() = %v, want %v", c.name, err, c.want)
		}
	}
	var ge *GroupError
	if err := (Policy{RequirePQ: true, Groups: []tls.CurveID{tls.CurveP256}}).Check(); !errors.As(err, &ge) || ge.Group != tls.CurveP256 {
		t.Errorf("the error does not name the group at fault: %v", err)
	}
}

// socketPair is a connected pair with kernel buffers: net.Pipe has none,
// and a side writing an alert while the other still writes would block.
func socketPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	return conns[0], conns[1]
}

// handshakeState runs one crypto/tls handshake over a socket pair and
// returns what the server negotiated, or its error.
func handshakeState(t testing.TB, server, client *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	a, b := socketPair(t)
	defer a.Close()
	defer b.Close()
	deadline := time.Now().Add(20 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	srv := tls.Server(a, server)
	clientErr := make(chan error, 1)
	go func() {
		c := tls.Client(b, client)
		clientErr <- c.Handshake()
	}()
	err := srv.Handshake()
	cerr := <-clientErr
	if err == nil && cerr != nil {
		t.Fatalf("client: %v", cerr)
	}
	return srv.ConnectionState(), err
}

// handshake returns the group a handshake agreed on, or the server's error.
func handshake(t testing.TB, server, client *tls.Config) (tls.CurveID, error) {
	t.Helper()
	cs, err := handshakeState(t, server, client)
	return cs.CurveID, err
}

func configs(t testing.TB) (*tls.Config, *tls.Config) {
	ca := testpki.NewCA()
	leaf := ca.Issue("localhost")
	cert := leaf.TLS()
	server := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }}
	client := &tls.Config{ServerName: "localhost", RootCAs: ca.Pool()}
	return server, client
}

// TestServerPicksByTheListsOrder proves what crypto/tls alone does not:
// the server's list order wins over the client's, including when the
// client sent no key share for the chosen group (a HelloRetryRequest).
func TestServerPicksByTheListsOrder(t *testing.T) {
	cases := []struct {
		name          string
		server        []tls.CurveID
		client        []tls.CurveID
		clientVersion uint16
		want          tls.CurveID
	}{
		{"P-256 over X25519", []tls.CurveID{tls.CurveP256, tls.X25519}, nil, 0, tls.CurveP256},
		{"X25519 over hybrid", []tls.CurveID{tls.X25519, tls.X25519MLKEM768}, nil, 0, tls.X25519},
		{"hybrid first", []tls.CurveID{tls.X25519MLKEM768, tls.X25519}, nil, 0, tls.X25519MLKEM768},
		{"P-384 the client lists last", []tls.CurveID{tls.CurveP384, tls.X25519}, []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384}, 0, tls.CurveP384},
		{"first the client supports", []tls.CurveID{tls.CurveP521, tls.CurveP256, tls.X25519}, []tls.CurveID{tls.X25519, tls.CurveP256}, 0, tls.CurveP256},
		{"TLS 1.2 client skips hybrid", []tls.CurveID{tls.X25519MLKEM768, tls.CurveP256, tls.X25519}, nil, tls.VersionTLS12, tls.CurveP256},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			server, client := configs(t)
			client.CurvePreferences = c.client
			client.MaxVersion = c.clientVersion
			Policy{Groups: c.server}.ApplyServer(server)
			got, err := handshake(t, server, client)
			if err != nil || got != c.want {
				t.Fatalf("negotiated %v, %v; want %v", got, err, c.want)
			}
		})
	}
}

func TestRequirePQRefusesClassicClients(t *testing.T) {
	server, base := configs(t)
	Policy{RequirePQ: true}.ApplyServer(server)
	if server.MinVersion != tls.VersionTLS13 {
		t.Fatalf("MinVersion %x, want TLS 1.3", server.MinVersion)
	}
	client := base.Clone()
	client.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP256}
	if _, err := handshake(t, server, client); err == nil {
		t.Fatal("a client without hybrid groups completed a --require-pq handshake")
	}
	client = base.Clone()
	client.MaxVersion = tls.VersionTLS12
	if _, err := handshake(t, server, client); err == nil {
		t.Fatal("a TLS 1.2 client completed a --require-pq handshake")
	}
	if got, err := handshake(t, server, base.Clone()); err != nil || !IsHybrid(got) {
		t.Fatalf("a default Go client negotiated %v, %v; want a hybrid group", got, err)
	}
}

// TestServerKeepsItsPerHandshakeConfig: a Config whose GetConfigForClient
// picks per handshake (as certs.ServerTLSConfig does) keeps doing so under
// the policy, which restricts the Config it returned.
func TestServerKeepsItsPerHandshakeConfig(t *testing.T) {
	server, client := configs(t)
	inner := server.Clone()
	inner.NextProtos = []string{"inner"}
	calls := 0
	server.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { calls++; return inner, nil }
	Policy{Groups: []tls.CurveID{tls.CurveP384}}.ApplyServer(server)
	client.NextProtos = []string{"inner"}
	for range 2 {
		cs, err := handshakeState(t, server, client)
		if err != nil {
			t.Fatal(err)
		}
		if cs.NegotiatedProtocol != "inner" || cs.CurveID != tls.CurveP384 {
			t.Fatalf("negotiated %q over %v; want the inner Config's protocol over P-384", cs.NegotiatedProtocol, cs.CurveID)
		}
	}
	if calls != 2 {
		t.Fatalf("inner GetConfigForClient called %d times, want 2", calls)
	}
}

func TestApplyClientRestrictsTheOffer(t *testing.T) {
	server, client := configs(t)
	Policy{Groups: []tls.CurveID{tls.CurveP256}, MinVersion: tls.VersionTLS13}.ApplyClient(client)
	if client.MinVersion != tls.VersionTLS13 {
		t.Fatalf("MinVersion %x", client.MinVersion)
	}
	if got, err := handshake(t, server, client); err != nil || got != tls.CurveP256 {
		t.Fatalf("negotiated %v, %v; want P-256", got, err)
	}
	server.MaxVersion = tls.VersionTLS12
	if _, err := handshake(t, server, client); err == nil {
		t.Fatal("a --min-tls-version 1.3 client completed a TLS 1.2 handshake")
	}
}
