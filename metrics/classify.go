package metrics

import (
	"context"
	"errors"
	"io"
	"os"
	"syscall"

	"github.com/moat-proxy/moat/certs"
	"github.com/moat-proxy/moat/proxy"
	"github.com/moat-proxy/moat/tlsstate"
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
	ReasonRevoked          = string(certs.ReasonRevoked)
	ReasonCRLExpired       = string(certs.ReasonCRLExpired)
	ReasonPeerRejectedCert = "peer-rejected-cert" // the peer refused our certificate
	ReasonNotTLS           = "not-tls"            // plaintext (often HTTP) sent to a TLS port
	ReasonBadRecord        = "bad-record"         // corrupt, oversized or undecryptable record
	ReasonProtocolVersion  = "protocol-version"   // no TLS version both sides accept
	ReasonNoSharedCipher   = "no-shared-cipher"   // no cipher suite or group both sides accept
	ReasonEOF              = "eof"                // the peer closed or reset mid-handshake
	ReasonBadSNI           = "bad-sni"            // the server name is not a valid host name (certs.CheckServerName)
	ReasonUnknownSNI       = "unknown-sni"        // no service on a shared listener answers to the server name
	ReasonEvicted          = "evicted"            // cut to make room for another handshake, or for the memory budget
	ReasonTooLarge         = "too-large"          // the client sent more than --max-client-cert-bytes allows
	ReasonOther            = "other"
)

// handshakeReasons lists every reason, so that each label child exists (and
// is exported as 0) from the start: a rate() over a series that appears only
// at its first increment misses that increment.
var handshakeReasons = []string{
	ReasonTimeout, ReasonNoCert, ReasonUnknownCA, ReasonExpired, ReasonNotAllowed,
	ReasonBadCert, ReasonRevoked, ReasonCRLExpired, ReasonPeerRejectedCert, ReasonNotTLS, ReasonBadRecord,
	ReasonProtocolVersion, ReasonNoSharedCipher, ReasonEOF, ReasonBadSNI, ReasonUnknownSNI, ReasonEvicted, ReasonTooLarge, ReasonOther,
}

// HandshakeErrorReason classifies a failed handshake's error for the reason
// label. crypto/tls has few typed errors; its texts are read in one place,
// tlsstate.ClassifyHandshakeFailure, whose contract test pins each one. The
// proxy's own timeout and EOF texts are still matched here.
func HandshakeErrorReason(err error) string {
	if err == nil {
		return ""
	}
	if ae, ok := certs.AsAuthError(err); ok {
		return string(ae.Reason)
	}
	if errors.Is(err, proxy.ErrNoRoute) {
		return ReasonUnknownSNI
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
	if isEOF(err) {
		return ReasonEOF
	}
	if r, ok := failureReasons[tlsstate.ClassifyHandshakeFailure(err)]; ok {
		return r
	}
	return ReasonOther
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

// failureReasons names the reason for each kind of crypto/tls failure;
// tlsstate.ClassifyHandshakeFailure holds the texts that decide the kind.
var failureReasons = map[tlsstate.HandshakeFailure]string{
	tlsstate.FailureNotTLS:              ReasonNotTLS,
	tlsstate.FailureBadRecord:           ReasonBadRecord,
	tlsstate.FailureProtocolVersion:     ReasonProtocolVersion,
	tlsstate.FailureNoSharedCipher:      ReasonNoSharedCipher,
	tlsstate.FailurePeerRejectedCert:    ReasonPeerRejectedCert,
	tlsstate.FailureCertificateRequired: ReasonNoCert,
	tlsstate.FailureNoClientCert:        ReasonNoCert,
	tlsstate.FailureNoCertificates:      ReasonBadSNI,
}
