package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"testing"
	"time"
)

// TestWhoConnectedInLogAndProxyHeader: the connection log line and the
// PROXY v2 header both say who connected and how: the peer's CN and SPIFFE
// ID, the ALPN protocol, the key-exchange group, and whether the session
// was resumed (first connection no, second yes); the group is a label of
// moat_handshakes_total.
func TestWhoConnectedInLogAndProxyHeader(t *testing.T) {
	ca := newPKI(t, "who CA")
	srvCert, srvKey := ca.serverCert(t)
	spiffe, _ := url.Parse("spiffe://trust.example/ns/shop/sa/web")
	cliCert, cliKey := ca.issue(t, "web-client", func(c *x509.Certificate) { c.URIs = []*url.URL{spiffe} })
	headers := make(chan *ppHeader, 4)
	up := ppUpstream(t, headers)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ops := &opsServer{status: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	m := startMoat(t, "server", "--listen", addr, "--target", up.addr(), "--cert", srvCert, "--key", srvKey,
		"--cacert", ca.file, "--allow-uri", spiffe.String(), "--alpn", "h2,http/1.1", "--proxy-protocol=v2", "--status", ops.status)
	cert, err := tls.LoadX509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	cfg := &tls.Config{RootCAs: roots, ServerName: "localhost", Certificates: []tls.Certificate{cert},
		NextProtos: []string{"http/1.1"}, ClientSessionCache: tls.NewLRUClientSessionCache(4),
		CurvePreferences: []tls.CurveID{tls.X25519MLKEM768}}
	for i, resumed := range []bool{false, true} {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		echoLine(t, c, "who\n")
		if c.ConnectionState().DidResume != resumed {
			t.Fatalf("connection %d: resumed %v, want %v", i, c.ConnectionState().DidResume, resumed)
		}
		var h *ppHeader
		select {
		case h = <-headers:
		case <-time.After(step):
			t.Fatal("no header reached the upstream")
		}
		local := c.LocalAddr().String()
		c.Close()
		wantResumed := []byte{0}
		if resumed {
			wantResumed = []byte{1}
		}
		for what, gw := range map[string][2]string{
			"ALPN":    {string(h.tlvs[0x01]), "http/1.1"},
			"SSL CN":  {string(h.ssl[0x22]), "web-client"},
			"SPIFFE":  {string(h.tlvs[0xE4]), spiffe.String()},
			"group":   {string(h.tlvs[0xE5]), "X25519MLKEM768"},
			"resumed": {string(h.tlvs[0xE6]), string(wantResumed)},
		} {
			if gw[0] != gw[1] {
				t.Errorf("connection %d: %s TLV %q, want %q", i, what, gw[0], gw[1])
			}
		}
		line := closedLine(t, m, local, step)
		for k, want := range map[string]any{"peer": "web-client", "peer_spiffe_id": spiffe.String(), "alpn": "http/1.1",
			"tls_group": "X25519MLKEM768", "resumed": resumed} {
			if line[k] != want {
				t.Errorf("connection %d: log field %s = %v, want %v", i, k, line[k], want)
			}
		}
	}
	if got := value(ops.metrics(t), "moat_handshakes_total", map[string]string{"result": "ok", "version": "1.3", "group": "X25519MLKEM768"}); got != 2 {
		t.Errorf("moat_handshakes_total{group=X25519MLKEM768} = %v, want 2", got)
	}
}
