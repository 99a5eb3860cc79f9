package certs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"

	"github.com/moat-proxy/moat/tlsstate"
)

// MaxServerNameLen is the longest host name DNS can carry (RFC 1035: 255
// bytes on the wire, 253 written as text without a trailing dot).
const MaxServerNameLen = 253

// maxLabelLen is the longest label of a host name (RFC 1035).
const maxLabelLen = 63

// CheckServerName reports why name is not a host name moat accepts as SNI,
// or nil if it is. The rules are RFC 6066's HostName, with two deliberate
// allowances:
//
//   - ASCII letters, digits and hyphens, in dot-separated labels of 1 to 63
//     bytes, at most 253 bytes in all, no trailing dot (RFC 6066 forbids
//     it, and crypto/tls already refuses one with decode_error). A hyphen
//     may not begin or end a label (RFC 1123).
//   - Underscores are allowed anywhere in a label: they are not valid in
//     host names, but internal deployments use them ("my_service.internal")
//     and Go's crypto/x509 matches them; they are harmless in a log line.
//   - IP address literals (IPv4, or IPv6 without a zone) are allowed. RFC
//     6066 forbids them in SNI and well-behaved clients (Go, curl, browsers,
//     OpenSSL-based tools since Python 3.7) send none, but older clients do;
//     refusing them would break those clients and protect nothing, since
//     an address is short and printable.
//
// The empty name means the client sent no SNI at all, which is allowed.
// CheckServerName is pure and cheap; it runs on every server handshake.
func CheckServerName(name string) error {
	if name == "" {
		return nil
	}
	if len(name) > MaxServerNameLen {
		return fmt.Errorf("longer than %d bytes (%d)", MaxServerNameLen, len(name))
	}
	if ip, err := netip.ParseAddr(name); err == nil && ip.Zone() == "" {
		return nil
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '.' {
			if !hostByte(name[i]) {
				return fmt.Errorf("byte %#02x at offset %d is not a letter, digit, hyphen, underscore or dot", name[i], i)
			}
			continue
		}
		if err := checkLabel(name[start:i]); err != nil {
			return fmt.Errorf("label %d: %w", labelIndex(name, start), err)
		}
		start = i + 1
	}
	return nil
}

func hostByte(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '_'
}

func checkLabel(l string) error {
	switch {
	case l == "":
		return errors.New("empty (two dots in a row, or a leading or trailing dot)")
	case len(l) > maxLabelLen:
		return fmt.Errorf("longer than %d bytes (%d)", maxLabelLen, len(l))
	case l[0] == '-' || l[len(l)-1] == '-':
		return errors.New("begins or ends with a hyphen")
	}
	return nil
}

// labelIndex counts the labels before offset, so that an error can say which
// one (numbered from 1) without quoting the name.
func labelIndex(name string, offset int) int {
	n := 1
	for i := 0; i < offset; i++ {
		if name[i] == '.' {
			n++
		}
	}
	return n
}

// refuseServerName is the tls.Config a server hands crypto/tls, from
// GetConfigForClient, for a handshake whose server name CheckServerName
// refuses. It has no certificate, so crypto/tls ends the handshake with an
// unrecognized_name alert (112) when it picks the certificate, before any
// key exchange, client certificate or upstream connection; an error from
// GetConfigForClient would send internal_error instead. Session tickets are
// off so that a TLS 1.3 resumption, which skips picking a certificate, cannot
// slip past.
func refuseServerName(base *tls.Config) *tls.Config {
	return &tls.Config{
		MinVersion:             base.MinVersion,
		MaxVersion:             base.MaxVersion,
		CipherSuites:           base.CipherSuites,
		SessionTicketsDisabled: true,
	}
}

// ServerNameError is why a ServerTLSConfig server refused a handshake: the
// client's server name (SNI) is not a host name CheckServerName accepts.
// The client was sent unrecognized_name (112).
type ServerNameError struct {
	Err error // what crypto/tls returned
}

func (e *ServerNameError) Error() string {
	return "server name (SNI) refused: not a valid DNS host name"
}

// Unwrap exposes crypto/tls's error.
func (e *ServerNameError) Unwrap() error { return e.Err }

// AsServerNameError classifies the error a ServerTLSConfig server's
// Handshake returned: a refused server name yields a *ServerNameError, any
// other error false. crypto/tls has no exported error for it: tlsstate
// matches its text, and TestServerTLSConfigRefusesBadServerName checks the
// whole refusal.
func AsServerNameError(err error) (*ServerNameError, bool) {
	var sne *ServerNameError
	if errors.As(err, &sne) {
		return sne, true
	}
	// crypto/tls fails a Config with no certificate to serve with its
	// unexported errNoCertificates. Under ServerTLSConfig that happens only
	// through refuseServerName: Source's GetCertificate returns an error of
	// its own when it has no certificate.
	if tlsstate.IsNoCertificatesConfigured(err) {
		return &ServerNameError{Err: err}, true
	}
	return nil, false
}
