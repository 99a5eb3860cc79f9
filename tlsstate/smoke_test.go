package tlsstate

import (
	"crypto/tls"
	"testing"
)

func TestSmoke(t *testing.T) {
	p := testPKI(t)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		srvCfg, cliCfg := p.configs(v, p.large, true)
		s, c := Server(srvCfg, Options{}), Client(cliCfg, Options{})
		l := &link{t: t, a: c, b: s, window: 8192}
		l.handshake()
		l.send(c, s, pattern(3000, 1))
		l.send(s, c, pattern(3000, 2))
		t.Logf("v=%x steps=%d moved=%d chain=%d", v, l.steps, l.moved, p.large.ChainBytes())
	}
}
