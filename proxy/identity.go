package proxy

import "crypto/x509"

// spiffeID returns c's first spiffe:// URI SAN, or "". The log line passes
// it through loggable like every name a peer chose.
func spiffeID(c *x509.Certificate) string {
	for _, u := range c.URIs {
		if u.Scheme == "spiffe" {
			return u.String()
		}
	}
	return ""
}
