package tlsstate

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"testing"
)

// TestClassifyHandshakeFailureTellsWhoSentTheAlert: a certificate alert
// means the peer refused our certificate only when the peer sent it; other
// alerts count whichever side sent them, and wrapping changes nothing.
// TestCryptoTLSErrorTextContract checks the texts against real handshakes.
func TestClassifyHandshakeFailureTellsWhoSentTheAlert(t *testing.T) {
	alert := func(op string, a tls.AlertError) error { return &net.OpError{Op: op, Err: a} }
	cases := []struct {
		name string
		err  error
		want HandshakeFailure
	}{
		{"nil", nil, FailureOther},
		{"peer refused our certificate", alert("remote error", 48), FailurePeerRejectedCert},
		{"we refused the peer's certificate", alert("local error", 42), FailureOther},
		{"peer's bad record MAC", alert("remote error", 20), FailureBadRecord},
		{"our bad record MAC, wrapped", fmt.Errorf("read: %w", alert("local error", 20)), FailureBadRecord},
		{"peer's protocol version", alert("remote error", 70), FailureProtocolVersion},
		{"peer wanted a certificate", alert("remote error", 116), FailureCertificateRequired},
		{"handshake failure alert", alert("remote error", 40), FailureOther},
		{"something new", errors.New("tls: something new"), FailureOther},
	}
	for _, c := range cases {
		if got := ClassifyHandshakeFailure(c.err); got != c.want {
			t.Errorf("%s: ClassifyHandshakeFailure(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

// TestRenegotiationPredicatesNeedTheirSide: IsRenegotiationRefused wants the
// alert we sent, not one the peer sent, and neither predicate takes nil.
func TestRenegotiationPredicatesNeedTheirSide(t *testing.T) {
	if IsRenegotiationRefused(&net.OpError{Op: "remote error", Err: tls.AlertError(100)}) {
		t.Error("a peer's no_renegotiation counted as our refusal")
	}
	if !IsRenegotiationRefused(fmt.Errorf("relay: %w", &net.OpError{Op: "local error", Err: tls.AlertError(100)})) {
		t.Error("our wrapped no_renegotiation not recognised")
	}
	if IsRenegotiationRefused(nil) || IsClientRenegotiation(nil) || IsNoClientCert(nil) || IsNoCertificatesConfigured(nil) {
		t.Error("a nil error matched a predicate")
	}
}
