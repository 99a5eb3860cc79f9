package certs

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	workloadpb "github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// The tests here run go-spiffe's client against a Workload API server
// built from go-spiffe's public proto package: real gRPC over a unix
// socket, refusing calls without the workload.spiffe.io header as SPIRE's
// agent does. The e2e tests run the real SPIRE agent.

// testWorkloadAPI serves X509SVIDResponses; push sends the next one to
// every open stream and to streams opened later.
type testWorkloadAPI struct {
	workloadpb.UnimplementedSpiffeWorkloadAPIServer
	mu      sync.Mutex
	current *workloadpb.X509SVIDResponse
	changed chan struct{} // closed and replaced on every push
	srv     *grpc.Server
}

func startWorkloadAPI(t *testing.T, sock string, first *workloadpb.X509SVIDResponse) *testWorkloadAPI {
	t.Helper()
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	api := &testWorkloadAPI{current: first, changed: make(chan struct{}), srv: grpc.NewServer()}
	workloadpb.RegisterSpiffeWorkloadAPIServer(api.srv, api)
	go api.srv.Serve(ln)
	t.Cleanup(api.srv.Stop)
	return api
}

func (a *testWorkloadAPI) push(r *workloadpb.X509SVIDResponse) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.current = r
	close(a.changed)
	a.changed = make(chan struct{})
}

func (a *testWorkloadAPI) FetchX509SVID(_ *workloadpb.X509SVIDRequest, stream workloadpb.SpiffeWorkloadAPI_FetchX509SVIDServer) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing from request")
	}
	for {
		a.mu.Lock()
		r, changed := a.current, a.changed
		a.mu.Unlock()
		if r == nil {
			return status.Error(codes.PermissionDenied, "no identity issued")
		}
		if err := stream.Send(r); err != nil {
			return err
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-changed:
		}
	}
}

// svid issues an X.509-SVID for id from ca and the response carrying it,
// with ca as the trust domain's bundle and federated as other bundles.
func svidResponse(t *testing.T, ca *testCA, id string, federated map[string]*testCA) (*workloadpb.X509SVIDResponse, *tls.Certificate) {
	t.Helper()
	cert := issueSVID(t, ca, id, "localhost")
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	r := &workloadpb.X509SVIDResponse{
		Svids:            []*workloadpb.X509SVID{{SpiffeId: id, X509Svid: cert.Leaf.Raw, X509SvidKey: key, Bundle: ca.cert.Raw}},
		FederatedBundles: map[string][]byte{},
	}
	for td, fca := range federated {
		r.FederatedBundles["spiffe://"+td] = fca.cert.Raw
	}
	return r, cert
}

func issueSVID(t *testing.T, ca *testCA, id string, dns ...string) *tls.Certificate {
	t.Helper()
	u, err := url.Parse(id)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := leafTemplate("", x509.ExtKeyUsageServerAuth)
	tmpl.Subject.CommonName = ""
	tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	tmpl.URIs = []*url.URL{u}
	tmpl.DNSNames = dns
	return ca.issue(t, tmpl)
}

// watchEvents runs src.Watch and delivers what it reports.
func watchEvents(t *testing.T, src *Source) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	events := make(chan error, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		src.Watch(ctx, func(err error) { events <- err })
	}()
	t.Cleanup(func() { cancel(); <-done })
	return events
}

func nextEvent(t *testing.T, events <-chan error) error {
	t.Helper()
	select {
	case err := <-events:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("Watch reported nothing within 30s")
		return nil
	}
}

func waitSerial(t *testing.T, src *Source, want *big.Int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for serial(src) == nil || serial(src).Cmp(want) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("serial in service %v, want %v", serial(src), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWorkloadSourceServesRotatesAndSurvivesALostAgent(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	ca, other := newTestCA(t, "td CA"), newTestCA(t, "partner CA")
	first, firstCert := svidResponse(t, ca, "spiffe://td.test/web", map[string]*testCA{"partner.test": other})
	api := startWorkloadAPI(t, sock, first)

	src, err := NewWorkloadSource("unix://"+sock, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if got := src.Waiting(); got != WaitingForSVID && serial(src) == nil {
		t.Errorf("Waiting before the first SVID = %q", got)
	}
	events := watchEvents(t, src)
	if err := src.Await(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := nextEvent(t, events); err != nil {
		t.Fatalf("first report: %v", err)
	}
	waitSerial(t, src, firstCert.Leaf.SerialNumber)
	if got := src.Waiting(); got != "" {
		t.Errorf("Waiting with an SVID in service = %q", got)
	}

	// Peers are verified against their own trust domain's bundle.
	server := src.ServerTLSConfig(Policy{URIs: []string{"spiffe://td.test/client", "spiffe://partner.test/*"}}, true)
	for _, tc := range []struct {
		name   string
		client *tls.Certificate
		reason Reason // "" = admitted
	}{
		{"same trust domain", issueSVID(t, ca, "spiffe://td.test/client"), ""},
		{"federated trust domain", issueSVID(t, other, "spiffe://partner.test/api"), ""},
		{"not allowed", issueSVID(t, ca, "spiffe://td.test/intruder"), ReasonNotAllowed},
		{"claims td.test, signed by the partner", issueSVID(t, other, "spiffe://td.test/client"), ReasonUnknownCA},
		{"unknown trust domain", issueSVID(t, ca, "spiffe://elsewhere.test/client"), ReasonUnknownCA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := &tls.Config{RootCAs: ca.pool(), ServerName: "localhost", Certificates: []tls.Certificate{*tc.client}}
			serverErr, _ := handshake(t, server, client)
			ae, _ := AsAuthError(serverErr)
			switch {
			case tc.reason == "" && serverErr != nil:
				t.Fatalf("refused: %v", serverErr)
			case tc.reason != "" && (ae == nil || ae.Reason != tc.reason):
				t.Fatalf("server error %v, want reason %s", serverErr, tc.reason)
			}
		})
	}

	// Rotation: the pushed SVID serves the next handshake.
	second, secondCert := svidResponse(t, ca, "spiffe://td.test/web", nil)
	api.push(second)
	if err := nextEvent(t, events); err != nil {
		t.Fatalf("rotation report: %v", err)
	}
	waitSerial(t, src, secondCert.Leaf.SerialNumber)
	got, err := src.GetCertificate(nil)
	if err != nil || got.Leaf.SerialNumber.Cmp(secondCert.Leaf.SerialNumber) != 0 {
		t.Fatalf("GetCertificate after rotation: %v", err)
	}

	// The agent goes away: one report, the SVID stays in service.
	api.srv.Stop()
	err = nextEvent(t, events)
	var lost *WorkloadLostError
	if !errors.As(err, &lost) || !strings.Contains(err.Error(), sock) {
		t.Fatalf("report after the agent went away: %v", err)
	}
	time.Sleep(2 * time.Second) // several reconnect attempts (backoff starts at 250ms)
	select {
	case err := <-events:
		t.Fatalf("a second report while the agent is away: %v", err)
	default:
	}
	if serial(src).Cmp(secondCert.Leaf.SerialNumber) != 0 || src.Waiting() != "" {
		t.Fatal("the SVID in service did not survive the lost agent")
	}

	// The agent is back: the reconnect picks up its SVID.
	third, thirdCert := svidResponse(t, ca, "spiffe://td.test/web", nil)
	startWorkloadAPI(t, sock, third) // Stop closed the listener, which removed the socket file
	if err := nextEvent(t, events); err != nil {
		t.Fatalf("report after reconnecting: %v", err)
	}
	waitSerial(t, src, thirdCert.Leaf.SerialNumber)
}

func TestWorkloadSourceClientVerifiesServerByNameAndBundle(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ca, other := newTestCA(t, "td CA"), newTestCA(t, "other CA")
	r, _ := svidResponse(t, ca, "spiffe://td.test/client", nil)
	startWorkloadAPI(t, sock, r)
	src, err := NewWorkloadSource("unix://"+sock, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := src.Await(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantDB := Policy{URIs: []string{"spiffe://td.test/db"}}
	for _, tc := range []struct {
		name       string
		serverCert *tls.Certificate
		check      ServerCheck
		ok         bool
	}{
		{"right name", issueSVID(t, ca, "spiffe://td.test/db", "localhost"), ServerCheck{Name: "localhost"}, true},
		{"wrong name", issueSVID(t, ca, "spiffe://td.test/db", "localhost"), ServerCheck{Name: "db.example"}, false},
		{"other CA", issueSVID(t, other, "spiffe://td.test/db", "localhost"), ServerCheck{Name: "localhost"}, false},
		{"chain only", issueSVID(t, ca, "spiffe://td.test/db"), ServerCheck{}, true},
		{"identity replaces the name", issueSVID(t, ca, "spiffe://td.test/db"), ServerCheck{Name: "db.example", Identities: wantDB}, true},
		{"identity refuses", issueSVID(t, ca, "spiffe://td.test/cache", "db.example"), ServerCheck{Name: "db.example", Identities: wantDB}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server := &tls.Config{Certificates: []tls.Certificate{*tc.serverCert}, ClientAuth: tls.RequireAnyClientCert}
			_, clientErr := handshake(t, server, src.ClientTLSConfig("localhost", tc.check))
			if (clientErr == nil) != tc.ok {
				t.Fatalf("client error %v, want ok=%v", clientErr, tc.ok)
			}
		})
	}
}

func TestWorkloadSourceAwaitNamesTheAddressOnTimeout(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "absent.sock")
	src, err := NewWorkloadSource("unix://"+sock, 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	err = src.Await(context.Background())
	if err == nil || !strings.Contains(err.Error(), "unix://"+sock) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Await = %v, want one line naming the address", err)
	}
	if src.Waiting() != WaitingForSVID {
		t.Fatalf("Waiting = %q", src.Waiting())
	}
	if _, err := NewWorkloadSource("/no/scheme.sock", time.Second); err == nil {
		t.Fatal("an address without a scheme was accepted")
	}
}

// TestPendingRevocationListFollowsTheWorkloadBundle: --crl beside the
// Workload API. The files are read at start, but until the first SVID
// brings the bundle nothing verifies them and every chain is refused;
// once it has, a server the CRL lists is refused and another passes.
func TestPendingRevocationListFollowsTheWorkloadBundle(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	ca := newTestCA(t, "td CA")
	good := issueSVID(t, ca, "spiffe://td.test/db", "localhost")
	revoked := issueSVID(t, ca, "spiffe://td.test/db", "localhost")
	tmpl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: time.Now().Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: revoked.Leaf.SerialNumber, RevocationTime: time.Now()}}}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	crlFile := filepath.Join(dir, "td.crl")
	writeTestFile(t, crlFile, der)

	src, err := NewWorkloadSource("unix://"+sock, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	list, err := NewPendingRevocationList([]string{crlFile}, src.CACertificates, CRLExpiredWarn)
	if err != nil {
		t.Fatal(err)
	}
	if err := list.Reload(); err != nil || !list.Pending() {
		t.Fatalf("before any bundle: Reload %v, pending %v; want nil and still pending", err, list.Pending())
	}
	if err := list.check([][]*x509.Certificate{{good.Leaf, ca.cert}}, time.Now()); revocationReason(err) != ReasonCRLExpired {
		t.Fatalf("check while pending = %v, want a refusal counted as crl-expired", err)
	}

	r, _ := svidResponse(t, ca, "spiffe://td.test/client", nil)
	startWorkloadAPI(t, sock, r)
	if err := src.Await(context.Background()); err != nil {
		t.Fatal(err)
	}
	if changed, err := list.Refresh(); err != nil || !changed || list.Pending() {
		t.Fatalf("after the first SVID: Refresh = %v, %v; pending %v", changed, err, list.Pending())
	}
	check := ServerCheck{Name: "localhost", Identities: Policy{Revocation: list}}
	for _, tc := range []struct {
		name string
		cert *tls.Certificate
		ok   bool
	}{{"listed", revoked, false}, {"not listed", good, true}} {
		server := &tls.Config{Certificates: []tls.Certificate{*tc.cert}, ClientAuth: tls.RequireAnyClientCert}
		_, clientErr := handshake(t, server, src.ClientTLSConfig("localhost", check))
		if (clientErr == nil) != tc.ok {
			t.Errorf("%s: client error %v, want ok=%v", tc.name, clientErr, tc.ok)
		}
	}

	// A CRL the bundle does not vouch for fails the load, naming the file.
	stranger := newTestCA(t, "stranger")
	der2, err := x509.CreateRevocationList(rand.Reader, tmpl, stranger.cert, stranger.key)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other.crl")
	writeTestFile(t, other, der2)
	bad, err := NewPendingRevocationList([]string{other}, src.CACertificates, CRLExpiredWarn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Refresh(); err == nil || !strings.Contains(err.Error(), other) {
		t.Errorf("a CRL from outside the bundle: %v, want an error naming %s", err, other)
	}
}
