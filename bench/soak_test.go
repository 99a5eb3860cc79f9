package main

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/moat-proxy/moat/internal/testpki"
)

// serverNameSeenBy feeds records to a crypto/tls server, an independent
// parser of ClientHellos, and returns the server name it read.
func serverNameSeenBy(t *testing.T, records []byte) string {
	t.Helper()
	client, server := net.Pipe()
	defer client.Close()
	seen := make(chan string, 1)
	errParsed := errors.New("parsed")
	srv := tls.Server(server, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		seen <- h.ServerName
		return nil, errParsed
	}})
	done := make(chan error, 1)
	go func() { done <- srv.Handshake(); server.Close() }()
	go func() { _, _ = client.Write(records) }()
	go func() { _, _ = net.Conn(client).Read(make([]byte, 1)) }() // take the alert, if any
	select {
	case name := <-seen:
		return name
	case err := <-done:
		select {
		case name := <-seen: // both were ready
			return name
		default:
		}
		t.Fatalf("crypto/tls did not accept the ClientHello: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("crypto/tls server did not finish reading the ClientHello")
	}
	return ""
}

func TestWithServerNameIsReadBackByCryptoTLS(t *testing.T) {
	hello, err := captureClientHello(&tls.Config{ServerName: placeholderName, MinVersion: tls.VersionTLS12,
		CurvePreferences: []tls.CurveID{tls.X25519}})
	if err != nil {
		t.Fatal(err)
	}
	if got := serverNameSeenBy(t, hello); got != placeholderName {
		t.Fatalf("the captured hello itself reads back as %q", got)
	}
	long := strings.Repeat("abcdefghi.", 6000)[:59993] + "example"
	cases := []struct {
		name       string
		serverName string
	}{
		{"short", "other.example"},
		{"NUL byte inside", "legit.example\x00.evil.example"},
		{"60,000 bytes over four records", long},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			recs, err := withServerName(hello, c.serverName)
			if err != nil {
				t.Fatal(err)
			}
			assertRecordFraming(t, recs)
			if got := serverNameSeenBy(t, recs); got != c.serverName {
				t.Fatalf("crypto/tls read a %d-byte name %.40q, want the %d-byte %.40q", len(got), got, len(c.serverName), c.serverName)
			}
		})
	}
}

// assertRecordFraming checks that recs is whole handshake records, none
// over the 16 KiB a record may carry.
func assertRecordFraming(t *testing.T, recs []byte) {
	t.Helper()
	for len(recs) > 0 {
		if len(recs) < 5 || recs[0] != recordTypeHandshake {
			t.Fatalf("not a handshake record header: % x", recs[:min(5, len(recs))])
		}
		n := int(binary.BigEndian.Uint16(recs[3:]))
		if n > maxRecordPayload || len(recs) < 5+n {
			t.Fatalf("record of %d bytes (%d left)", n, len(recs)-5)
		}
		recs = recs[5+n:]
	}
}

func TestBadSNIHellosCarryTheirNames(t *testing.T) {
	long, nul, err := badSNIHellos()
	if err != nil {
		t.Fatal(err)
	}
	if got := serverNameSeenBy(t, long); len(got) != 60000 {
		t.Errorf("long hello names %d bytes, want 60000", len(got))
	}
	if got := serverNameSeenBy(t, nul); !strings.Contains(got, "\x00") {
		t.Errorf("NUL hello names %q, want a NUL in it", got)
	}
}

// TestBigClientCertIsAcceptedWholeByCryptoTLS proves the big-certificate
// attack stalls a message the server would otherwise take: crypto/tls
// accepts Certificate messages up to 256 KiB, and this one fits.
func TestBigClientCertIsAcceptedWholeByCryptoTLS(t *testing.T) {
	ca := testpki.NewCA()
	big, n, err := bigClientCert(ca)
	if err != nil {
		t.Fatal(err)
	}
	if n < 240<<10 {
		t.Fatalf("big certificate is only %d bytes", n)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{ca.Issue("localhost").TLS()},
		ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			err = c.(*tls.Conn).Handshake()
			c.Close()
		}
		got <- err
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost",
		Certificates: []tls.Certificate{big}, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := <-got; err != nil {
		t.Fatalf("server refused the %d-byte certificate: %v", n, err)
	}
}

func TestParseMetricsKeepsCountersDropsBuckets(t *testing.T) {
	text := `# HELP moat_connections_total Connections accepted.
# TYPE moat_connections_total counter
moat_connections_total 2252
moat_connections_refused_total{reason="max-handshakes"} 17
moat_handshake_duration_seconds_bucket{le="0.001"} 3
moat_handshake_duration_seconds_count 288
go_goroutines 262
go_threads 9
process_open_fds 577 1700000000000
`
	got := parseMetrics(strings.NewReader(text), "moat_", "go_goroutines", "process_open_fds")
	want := map[string]float64{
		"moat_connections_total":                                  2252,
		`moat_connections_refused_total{reason="max-handshakes"}`: 17,
		"moat_handshake_duration_seconds_count":                   288,
		"go_goroutines":                                           262,
		"process_open_fds":                                        577,
	}
	if len(got) != len(want) {
		t.Errorf("got %d samples %v, want %d", len(got), got, len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestPercentileNearestRank(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	cases := []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0, time.Millisecond}}
	for _, c := range cases {
		if got := percentile(d, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if got := percentile(nil, 99); got != 0 {
		t.Errorf("p99 of nothing = %v", got)
	}
	if got := percentile(d[:1], 99); got != time.Millisecond {
		t.Errorf("p99 of one = %v", got)
	}
}
