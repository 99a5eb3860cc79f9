package tlspolicy

import (
	"crypto/tls"
	"testing"
)

// BenchmarkServerHandshake compares a full TLS 1.3 handshake (both sides,
// over a socket pair) with crypto/tls's defaults and with a --tls-groups
// order applied: the per-handshake cost of choosing the group is one
// lookup in the client's list and a cached Config.
func BenchmarkServerHandshake(b *testing.B) {
	for _, c := range []struct {
		name   string
		policy Policy
	}{
		{"defaults", Policy{}},
		{"tls-groups X25519,P-256", Policy{Groups: []tls.CurveID{tls.X25519, tls.CurveP256}}},
		{"require-pq", Policy{RequirePQ: true}},
	} {
		b.Run(c.name, func(b *testing.B) {
			server, client := configs(b)
			client.CurvePreferences = []tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256}
			server.SessionTicketsDisabled = true
			if !c.policy.IsZero() {
				c.policy.ApplyServer(server)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := handshake(b, server, client); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
