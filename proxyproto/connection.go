package proxyproto

import (
	"crypto/tls"
	"net/netip"
)

// ForConnection builds the header moat sends upstream for one accepted
// connection: version 1 or 2 (anything else is treated as 2), from the
// client's address to the address it connected to. For version 2 and a
// finished handshake cs, the TLVs carry the ALPN protocol, the SNI, and a
// TypeSSL TLV with the TLS version, the cipher and, when the client showed
// a certificate, its CN, plus the TypeSPIFFEID TLV for a spiffe:// URI SAN,
// the TypeTLSGroup TLV naming the key-exchange group (when there was one)
// and the TypeTLSResumed TLV.
//
// verify is reported 0 when the client presented a certificate: moat relays
// only connections whose handshake, including its verifier, succeeded, so
// a certificate seen here was accepted. Without one it is 1, as the
// specification asks for "non-zero otherwise".
func ForConnection(version int, client, local netip.AddrPort, cs *tls.ConnectionState) []byte {
	if version == 1 {
		return V1(client, local)
	}
	if cs == nil {
		return V2(client, local)
	}
	var tlvs []TLV
	if cs.NegotiatedProtocol != "" {
		tlvs = append(tlvs, ALPN(cs.NegotiatedProtocol))
	}
	if cs.ServerName != "" {
		tlvs = append(tlvs, Authority(cs.ServerName))
	}
	tlvs = append(tlvs, sslTLV(cs))
	if cs.CurveID != 0 {
		tlvs = append(tlvs, TLSGroup(cs.CurveID.String()))
	}
	tlvs = append(tlvs, TLSResumed(cs.DidResume))
	if len(cs.PeerCertificates) > 0 {
		for _, u := range cs.PeerCertificates[0].URIs {
			if u.Scheme == "spiffe" {
				tlvs = append(tlvs, SPIFFEID(u.String()))
				break // an SVID has exactly one; take the first of anything else
			}
		}
	}
	return V2(client, local, tlvs...)
}

// sslTLV describes the TLS side. The cipher is named as Go and IANA name
// it ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"); for TLS 1.3 suites that is
// also OpenSSL's name, for TLS 1.2 ones HAProxy would send OpenSSL's
// ("ECDHE-ECDSA-AES128-GCM-SHA256"). A resumed session carries the certificate
// of the handshake that made it, so the client showed one in this session
// but not on this connection.
func sslTLV(cs *tls.ConnectionState) TLV {
	client, verify := ClientSSL, uint32(1)
	subs := []TLV{SSLVersion(versionName(cs.Version)), SSLCipher(tls.CipherSuiteName(cs.CipherSuite))}
	if len(cs.PeerCertificates) > 0 {
		client |= ClientCertSess
		if !cs.DidResume {
			client |= ClientCertConn
		}
		verify = 0
		if cn := cs.PeerCertificates[0].Subject.CommonName; cn != "" {
			subs = append(subs, SSLCN(cn))
		}
	}
	return SSL(client, verify, subs...)
}

// versionName uses OpenSSL's spelling ("TLSv1.3"), which is what HAProxy
// sends and what receivers written against it compare with.
func versionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLSv1"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS13:
		return "TLSv1.3"
	}
	return tls.VersionName(v)
}
