package certs

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
)

// FlightSize estimates the bytes a server sends in its first flight when it
// serves a chain, computed from the TLS wire format (RFC 8446, RFC 5246).
//
// The estimate assumes a full handshake with a typical modern client: SNI,
// extended master secret and secure renegotiation offered, a 32-byte legacy
// session ID in TLS 1.3 (middlebox compatibility mode), AES-128-GCM with
// SHA-256, no ALPN, no OCSP staple or SCTs, no HelloRetryRequest, no
// CertificateRequest (mTLS adds one naming the CAs), and no TLS 1.3
// NewSessionTicket (crypto/tls sends one in the first flight unless session
// tickets are disabled).
type FlightSize struct {
	// CertificateMessage is the TLS 1.3 Certificate handshake message alone.
	CertificateMessage int `json:"certificate_message"`
	// TLS13 is the flight with an X25519 key share.
	TLS13 int `json:"tls13"`
	// TLS13Hybrid is the flight with an X25519MLKEM768 key share, which Go
	// and current browsers prefer: the server's share is 1088 bytes bigger.
	TLS13Hybrid int `json:"tls13_hybrid"`
	// TLS12 is the flight of an ECDHE (X25519) TLS 1.2 handshake.
	TLS12 int `json:"tls12"`
}

// Wire-format sizes used below.
const (
	recordHeader     = 5         // type, version, length
	handshakeHeader  = 4         // type, uint24 length
	aeadOverhead     = 1 + 16    // TLS 1.3 inner content type and GCM tag
	maxRecordPayload = 16384     // RFC 8446 5.1, RFC 5246 6.2.1
	x25519Share      = 32        // public key
	mlkemHybridShare = 1088 + 32 // ML-KEM-768 ciphertext + X25519 key
	finishedSHA256   = 32        // verify_data for a SHA-256 suite
	// ServerHello without session ID and extensions: legacy_version,
	// random, session ID length, cipher suite, compression, extensions length.
	serverHelloFixed = 2 + 32 + 1 + 2 + 1 + 2
)

// records is the number of records a handshake message of n bytes needs.
func records(n int) int { return (n + maxRecordPayload - 1) / maxRecordPayload }

// estimateFlight computes FlightSize for chain, leaf first.
func estimateFlight(chain []*x509.Certificate) FlightSize {
	var der int
	for _, c := range chain {
		der += len(c.Raw)
	}
	sig := signatureSize(chain[0])
	// TLS 1.3 Certificate: context length, uint24 list length, then per
	// entry a uint24 length, the DER and a uint16 extensions length.
	cert13 := handshakeHeader + 1 + 3 + len(chain)*(3+2) + der
	flight13 := func(share int) int {
		// ServerHello: session ID echo, supported_versions (6), key_share.
		hello := recordHeader + handshakeHeader + serverHelloFixed + 32 + 6 + (4 + 2 + 2 + share)
		ccs := recordHeader + 1 // middlebox-compatibility ChangeCipherSpec
		encrypted := func(msg int) int { return msg + records(msg)*(recordHeader+aeadOverhead) }
		ee := encrypted(handshakeHeader + 2)
		verify := encrypted(handshakeHeader + 2 + 2 + sig)
		fin := encrypted(handshakeHeader + finishedSHA256)
		return hello + ccs + ee + encrypted(cert13) + verify + fin
	}
	// TLS 1.2 ServerHello extensions: renegotiation_info (5),
	// extended_master_secret (4), ec_point_formats (6), server_name ack (4),
	// session_ticket (4); no session ID in a full handshake.
	hello12 := recordHeader + handshakeHeader + serverHelloFixed + 5 + 4 + 6 + 4 + 4
	cert12 := handshakeHeader + 3 + len(chain)*3 + der
	// ServerKeyExchange: curve type, named curve, point length and point,
	// signature algorithm, signature length and signature.
	skx := handshakeHeader + 1 + 2 + 1 + x25519Share + 2 + 2 + sig
	done := handshakeHeader
	plain := func(msg int) int { return msg + records(msg)*recordHeader }
	return FlightSize{
		CertificateMessage: cert13,
		TLS13:              flight13(x25519Share),
		TLS13Hybrid:        flight13(mlkemHybridShare),
		TLS12:              hello12 + plain(cert12) + plain(skx) + plain(done),
	}
}

// signatureSize is the typical size of a signature by the leaf's key. ECDSA
// signatures are DER and vary by a byte or two; this is their usual length.
func signatureSize(leaf *x509.Certificate) int {
	switch k := leaf.PublicKey.(type) {
	case *rsa.PublicKey:
		return k.Size()
	case *ecdsa.PublicKey:
		n := (k.Curve.Params().BitSize + 7) / 8
		return 2 + 2*(2+n) + 1 // SEQUENCE of two INTEGERs, one with a sign byte
	case ed25519.PublicKey:
		return ed25519.SignatureSize
	default:
		return 256
	}
}
