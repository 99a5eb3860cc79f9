package proxy

import (
	"crypto/tls"
	"time"
)

// Observer receives the events metrics are made of. Calls come from the
// event loops and must not block.
type Observer interface {
	// Accepted is called for every accepted connection, Refused for one
	// closed at once because a limit was reached.
	Accepted()
	Refused(limit Limit)
	// Evicted is called for a handshake cut to make room for another
	// (reason max-handshakes or max-handshakes-per-source) or to stay
	// within the handshake memory budget (handshake-memory).
	Evicted(limit Limit)
	// Handshake reports a finished TLS handshake, successful or not.
	Handshake(state *tls.ConnectionState, took time.Duration, err error)
	// DialFailed reports a failed connect to the far side.
	DialFailed(err error)
	// Relayed counts plaintext bytes as they are delivered.
	Relayed(fromClient, toClient int)
	// Closed reports the end of a connection.
	Closed(s *Summary)
}

// Summary describes a finished connection; it is what the close log line
// and the metrics are made from.
type Summary struct {
	Client     string
	Duration   time.Duration
	FromClient int64 // plaintext bytes the accepting side sent
	ToClient   int64 // plaintext bytes the accepting side received
	TLSVersion string
	Cipher     string
	SNI        string
	ALPN       string
	Peer       string // the verified peer certificate's subject CN, if any
	// PeerSPIFFEID is the verified peer certificate's first spiffe:// URI
	// SAN (an X.509-SVID has exactly one), if any.
	PeerSPIFFEID string
	Resumed      bool        // the handshake resumed an earlier session
	Group        tls.CurveID // the key-exchange group negotiated (0: none, or not known)
	Reason       CloseReason
	Err          error
}

type nopObserver struct{}

func (nopObserver) Accepted()                                            {}
func (nopObserver) Refused(Limit)                                        {}
func (nopObserver) Evicted(Limit)                                        {}
func (nopObserver) Handshake(*tls.ConnectionState, time.Duration, error) {}
func (nopObserver) DialFailed(error)                                     {}
func (nopObserver) Relayed(int, int)                                     {}
func (nopObserver) Closed(*Summary)                                      {}
