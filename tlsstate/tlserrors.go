package tlsstate

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
)

// crypto/tls exports few typed errors: most of its failures reach a caller
// as text, and an alert as a *net.OpError ("remote error" for one the peer
// sent, "local error" for one we sent) around its unexported alert type.
// Every crypto/tls text moat recognises is in this file, and
// TestCryptoTLSErrorTextContract makes crypto/tls produce each one, so a Go
// release that rewords one fails that one test instead of quietly turning a
// refusal into "other" in a log line or a metric.

// The texts, as this Go release's crypto/tls writes them.
const (
	// the client's refusal of a server's HelloRequest (no_renegotiation, 100)
	textNoRenegotiation = "tls: no renegotiation"
	// a server's refusal of a client's renegotiation: it wanted no
	// handshake message after the handshake, and got a ClientHello
	textClientRenegotiation = "*tls.clientHelloMsg when waiting for *tls.helloRequestMsg"
	textNoClientCert        = "tls: client didn't provide a certificate"
	textNoCertificates      = "tls: no certificates configured"
	textNotTLS              = "does not look like a TLS handshake" // a tls.RecordHeaderError's Msg
	textSSLv2               = "unsupported SSLv2 handshake"        // likewise, for an SSLv2 ClientHello
)

// IsClientRenegotiation reports whether err is a server's refusal of a
// client's attempt to renegotiate TLS 1.2, which crypto/tls never allows:
// it sends unexpected_message (10) and returns this error.
func IsClientRenegotiation(err error) bool {
	return err != nil && strings.Contains(err.Error(), textClientRenegotiation)
}

// IsRenegotiationRefused reports whether err is a client's refusal of a
// server's HelloRequest because its tls.Config's Renegotiation does not
// allow (another) renegotiation: the client sent no_renegotiation (100) as a
// fatal alert.
func IsRenegotiationRefused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "local error" && op.Err != nil &&
		op.Err.Error() == textNoRenegotiation
}

// IsNoClientCert reports whether err is a server's refusal of a client that
// sent no certificate although the tls.Config's ClientAuth requires one.
func IsNoClientCert(err error) bool {
	return err != nil && strings.Contains(err.Error(), textNoClientCert)
}

// IsNoCertificatesConfigured reports whether err, or an error it wraps, is
// the one crypto/tls returns when a server's tls.Config has no certificate
// to offer (its unexported errNoCertificates).
func IsNoCertificatesConfigured(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if e.Error() == textNoCertificates {
			return true
		}
	}
	return false
}

// HandshakeFailure is what a failed handshake's error from crypto/tls says
// went wrong, as far as its type or text tells.
type HandshakeFailure int

// The kinds of handshake failure ClassifyHandshakeFailure tells apart.
const (
	FailureOther               HandshakeFailure = iota // none of the below
	FailureNotTLS                                      // the first bytes were not a TLS record (often plaintext HTTP)
	FailureBadRecord                                   // a corrupt, oversized or undecryptable record
	FailureProtocolVersion                             // no TLS version both sides accept
	FailureNoSharedCipher                              // no cipher suite, group or security level both sides accept
	FailurePeerRejectedCert                            // the peer's alert refused the certificate we sent
	FailureCertificateRequired                         // the peer's alert: it wanted a certificate we did not send
	FailureNoClientCert                                // we wanted a client certificate and got none
	FailureNoCertificates                              // our tls.Config offered no certificate (see IsNoCertificatesConfigured)
)

var failureNames = [...]string{
	FailureOther:               "other",
	FailureNotTLS:              "not-tls",
	FailureBadRecord:           "bad-record",
	FailureProtocolVersion:     "protocol-version",
	FailureNoSharedCipher:      "no-shared-cipher",
	FailurePeerRejectedCert:    "peer-rejected-cert",
	FailureCertificateRequired: "certificate-required",
	FailureNoClientCert:        "no-client-cert",
	FailureNoCertificates:      "no-certificates",
}

func (f HandshakeFailure) String() string {
	if f < 0 || int(f) >= len(failureNames) {
		return "other"
	}
	return failureNames[f]
}

// failureAlerts maps the alerts that mark a kind to it. crypto/tls reports
// an alert as "remote error: <text>" when the peer sent it and "local error:
// <text>" when we did, the text being tls.AlertError's; peerOnly alerts
// count only when the peer sent them: the certificate ones then mean it did
// not accept ours.
var failureAlerts = []struct {
	alert    tls.AlertError
	peerOnly bool
	kind     HandshakeFailure
}{
	{42, true, FailurePeerRejectedCert},      // bad certificate
	{43, true, FailurePeerRejectedCert},      // unsupported certificate
	{44, true, FailurePeerRejectedCert},      // revoked certificate
	{45, true, FailurePeerRejectedCert},      // expired certificate
	{46, true, FailurePeerRejectedCert},      // unknown certificate
	{48, true, FailurePeerRejectedCert},      // unknown certificate authority
	{20, false, FailureBadRecord},            // bad record MAC
	{21, false, FailureBadRecord},            // decryption failed
	{22, false, FailureBadRecord},            // record overflow
	{51, false, FailureBadRecord},            // error decrypting message
	{70, false, FailureProtocolVersion},      // protocol version not supported
	{71, false, FailureNoSharedCipher},       // insufficient security level
	{116, false, FailureCertificateRequired}, // certificate required
}

// failureTexts maps the texts of crypto/tls's own handshake errors to kinds.
var failureTexts = []struct {
	text string
	kind HandshakeFailure
}{
	{"tls: client offered only unsupported versions", FailureProtocolVersion},
	{"tls: no cipher suite supported by both", FailureNoSharedCipher},
	{"tls: no key exchanges supported by both", FailureNoSharedCipher},
	{textNoClientCert, FailureNoClientCert},
}

// textRemoteAlert is the net.OpError Op under which crypto/tls reports an
// alert the peer sent.
const textRemoteAlert = "remote error"

// ClassifyHandshakeFailure tells what kind of failure err, a handshake's
// error from crypto/tls, reports. It knows only crypto/tls's errors: a
// timeout, an EOF or an error of moat's own is FailureOther, and callers
// test for those first.
func ClassifyHandshakeFailure(err error) HandshakeFailure {
	if err == nil {
		return FailureOther
	}
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		switch {
		case strings.Contains(rh.Msg, textNotTLS):
			return FailureNotTLS
		case strings.Contains(rh.Msg, textSSLv2):
			return FailureProtocolVersion
		}
		return FailureBadRecord
	}
	if IsNoCertificatesConfigured(err) {
		return FailureNoCertificates
	}
	msg := err.Error()
	for _, a := range failureAlerts {
		text := a.alert.Error()
		if a.peerOnly {
			text = textRemoteAlert + ": " + text
		}
		if strings.Contains(msg, text) {
			return a.kind
		}
	}
	for _, t := range failureTexts {
		if strings.Contains(msg, t.text) {
			return t.kind
		}
	}
	return FailureOther
}
