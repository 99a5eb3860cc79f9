package metrics

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/moat-proxy/moat/certs"
	"github.com/moat-proxy/moat/proxy"
)

// Handshake error reasons: the values of the reason label of
// moat_handshake_errors_total. They are stable; dashboards and alerts are
// written against them. The certificate reasons are certs.Reason values, so
// that a log line and a metric name a refusal the same way.
const (
	ReasonTimeout          = "timeout" // no handshake within --handshake-timeout
	ReasonNoCert           = string(certs.ReasonNoCert)
	ReasonUnknownCA        = string(certs.ReasonUnknownCA)
	ReasonExpired          = string(certs.ReasonExpired)
	ReasonNotAllowed       = string(certs.ReasonNotAllowed)
	ReasonBadCert          = string(certs.ReasonBadCert)
	ReasonPeerRejectedCert = "peer-rejected-cert" // the peer refused our certificate
	ReasonNotTLS           = "not-tls"            // plaintext (often HTTP) sent to a TLS port
	ReasonBadRecord        = "bad-record"         // corrupt, oversized or undecryptable record
	ReasonProtocolVersion  = "protocol-version"   // no TLS version both sides accept
	ReasonNoSharedCipher   = "no-shared-cipher"   // no cipher suite or group both sides accept
	ReasonEOF              = "eof"                // the peer closed or reset mid-handshake
	ReasonBadSNI           = "bad-sni"            // the server name is not a valid host name (certs.CheckServerName)
	ReasonEvicted          = "evicted"            // cut to make room for another handshake, or for the memory budget
	ReasonTooLarge         = "too-large"          // the client sent more than --max-client-cert-bytes allows
	ReasonOther            = "other"
)

// handshakeReasons lists every reason, so that each label child exists (and
// is exported as 0) from the start: a rate() over a series that appears only
// at its first increment misses that increment.
var handshakeReasons = []string{
	ReasonTimeout, ReasonNoCert, ReasonUnknownCA, ReasonExpired, ReasonNotAllowed,
	ReasonBadCert, ReasonPeerRejectedCert, ReasonNotTLS, ReasonBadRecord,
	ReasonProtocolVersion, ReasonNoSharedCipher, ReasonEOF, ReasonBadSNI, ReasonEvicted, ReasonTooLarge, ReasonOther,
}

// HandshakeErrorReason classifies a failed handshake's error for the reason
// label. crypto/tls has few typed errors, so after the typed checks the
// classification falls back to the texts crypto/tls and the proxy use; the
// table test pins each one, so a Go release that rewords one shows up there.
func HandshakeErrorReason(err error) string {
	if err == nil {
		return ""
	}
	if ae, ok := certs.AsAuthError(err); ok {
		return string(ae.Reason)
	}
	if _, ok := certs.AsServerNameError(err); ok {
		return ReasonBadSNI
	}
	switch {
	case errors.Is(err, proxy.ErrHandshakeEvicted), errors.Is(err, proxy.ErrHandshakeMemory):
		return ReasonEvicted
	case errors.Is(err, proxy.ErrHandshakeTooLarge):
		return ReasonTooLarge
	case errors.Is(err, proxy.ErrClientHelloTimeout), isTimeout(err):
		return ReasonTimeout
	}
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		if strings.Contains(rh.Msg, "does not look like a TLS handshake") {
			return ReasonNotTLS
		}
		return ReasonBadRecord
	}
	if isEOF(err) {
		return ReasonEOF
	}
	return reasonFromText(err.Error())
}

// isTimeout recognises the handshake deadline. The proxy reports it as
// wrapping proxy.ErrHandshakeTimeout.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &t) && t.Timeout()) || errors.Is(err, proxy.ErrHandshakeTimeout)
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, proxy.ErrPeerClosed)
}

// textReasons maps crypto/tls error and alert texts to reasons, first match
// wins. Alerts the peer sent arrive as "remote error: tls: <alert>"; the
// certificate ones mean the peer did not accept the certificate we showed.
var textReasons = []struct{ text, reason string }{
	{"remote error: tls: bad certificate", ReasonPeerRejectedCert},
	{"remote error: tls: unknown certificate authority", ReasonPeerRejectedCert},
	{"remote error: tls: expired certificate", ReasonPeerRejectedCert},
	{"remote error: tls: unknown certificate", ReasonPeerRejectedCert},
	{"remote error: tls: unsupported certificate", ReasonPeerRejectedCert},
	{"remote error: tls: revoked certificate", ReasonPeerRejectedCert},
	{"bad record MAC", ReasonBadRecord},
	{"decryption failed", ReasonBadRecord},
	{"error decrypting message", ReasonBadRecord},
	{"record overflow", ReasonBadRecord},
	{"oversized record", ReasonBadRecord},
	{"protocol version not supported", ReasonProtocolVersion},
	{"unsupported versions", ReasonProtocolVersion},
	{"offered TLS version older than", ReasonProtocolVersion},
	{"unsupported SSLv2", ReasonProtocolVersion},
	{"no cipher suite supported by both", ReasonNoSharedCipher},
	{"no ECDHE curve supported by both", ReasonNoSharedCipher},
	{"no mutually supported", ReasonNoSharedCipher},
	{"insufficient security level", ReasonNoSharedCipher},
	{"certificate required", ReasonNoCert},
}

func reasonFromText(msg string) string {
	for _, t := range textReasons {
		if strings.Contains(msg, t.text) {
			return t.reason
		}
	}
	return ReasonOther
}
