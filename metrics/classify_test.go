package metrics

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/moat-proxy/moat/certs"
	"github.com/moat-proxy/moat/internal/testpki"
	"github.com/moat-proxy/moat/proxy"
)

// remoteAlert builds the error crypto/tls returns when the peer sends an
// alert; the alert type is unexported, so its text stands in for it.
func remoteAlert(text string) error {
	return &net.OpError{Op: "remote error", Err: errors.New("tls: " + text)}
}

func TestHandshakeErrorReasonTable(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"proxy handshake timeout", fmt.Errorf("%w within %s", proxy.ErrHandshakeTimeout, 10*time.Second), ReasonTimeout},
		{"deadline sentinel", fmt.Errorf("handshake: %w", os.ErrDeadlineExceeded), ReasonTimeout},
		{"auth no cert", &certs.AuthError{Reason: certs.ReasonNoCert}, ReasonNoCert},
		{"auth unknown CA", fmt.Errorf("wrapped: %w", &certs.AuthError{Reason: certs.ReasonUnknownCA}), ReasonUnknownCA},
		{"auth expired", &certs.AuthError{Reason: certs.ReasonExpired}, ReasonExpired},
		{"auth not allowed", &certs.AuthError{Reason: certs.ReasonNotAllowed}, ReasonNotAllowed},
		{"auth bad cert", &certs.AuthError{Reason: certs.ReasonBadCert}, ReasonBadCert},
		{"crypto/tls verified unknown CA", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, ReasonUnknownCA},
		{"crypto/tls verified expired", &tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.Expired}}, ReasonExpired},
		{"crypto/tls no client cert", errors.New("tls: client didn't provide a certificate"), ReasonNoCert},
		{"crypto/tls refused name", errors.New("tls: no certificates configured"), ReasonBadSNI},
		{"refused name", fmt.Errorf("wrapped: %w", &certs.ServerNameError{}), ReasonBadSNI},
		{"peer rejected our cert", remoteAlert("bad certificate"), ReasonPeerRejectedCert},
		{"peer does not know our CA", remoteAlert("unknown certificate authority"), ReasonPeerRejectedCert},
		{"peer says expired", remoteAlert("expired certificate"), ReasonPeerRejectedCert},
		{"plaintext to TLS port", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, ReasonNotTLS},
		{"oversized record", tls.RecordHeaderError{Msg: "oversized record received with length 20000"}, ReasonBadRecord},
		{"bad MAC local", &net.OpError{Op: "local error", Err: errors.New("tls: bad record MAC")}, ReasonBadRecord},
		{"bad MAC remote", remoteAlert("bad record MAC"), ReasonBadRecord},
		{"decrypt error", remoteAlert("error decrypting message"), ReasonBadRecord},
		{"version alert", remoteAlert("protocol version not supported"), ReasonProtocolVersion},
		{"client versions", errors.New("tls: client offered only unsupported versions: [302 301]"), ReasonProtocolVersion},
		{"no cipher", errors.New("tls: no cipher suite supported by both client and server; client offered: [c02f]"), ReasonNoSharedCipher},
		{"no key exchange", errors.New("tls: no key exchanges supported by both client and server"), ReasonNoSharedCipher},
		{"SSLv2 hello", tls.RecordHeaderError{Msg: "unsupported SSLv2 handshake received"}, ReasonProtocolVersion},
		{"peer wants a certificate", remoteAlert("certificate required"), ReasonNoCert},
		{"eof", io.EOF, ReasonEOF},
		{"unexpected eof", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), ReasonEOF},
		{"reset", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, ReasonEOF},
		{"proxy peer closed", fmt.Errorf("%w during the handshake", proxy.ErrPeerClosed), ReasonEOF},
		{"handshake failure alert", remoteAlert("handshake failure"), ReasonOther},
		{"anything else", errors.New("tls: something new"), ReasonOther},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := HandshakeErrorReason(c.err); got != c.want {
				t.Errorf("HandshakeErrorReason(%v) = %q, want %q", c.err, got, c.want)
			}
		})
	}
}

// TestHandshakeErrorReasonFromRealHandshakes checks the classifier against
// the errors this Go release's crypto/tls really returns, so that a reworded
// message fails here rather than silently becoming "other".
func TestHandshakeErrorReasonFromRealHandshakes(t *testing.T) {
	ca := testpki.NewCA()
	serverCert := ca.Issue("localhost").TLS()
	base := &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12}
	cases := []struct {
		name   string
		server *tls.Config
		client func(net.Conn)
		want   string
	}{
		{"plaintext HTTP", base, func(c net.Conn) { io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") }, ReasonNotTLS},
		{"TLS 1.1 client", base, func(c net.Conn) {
			tls.Client(c, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}).Handshake()
		}, ReasonProtocolVersion},
		{"no shared cipher", &tls.Config{Certificates: base.Certificates, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}, func(c net.Conn) {
			tls.Client(c, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
				CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}).Handshake()
		}, ReasonNoSharedCipher},
		{"client hangs up", base, func(c net.Conn) {}, ReasonEOF},
		{"client distrusts our CA", base, func(c net.Conn) {
			tls.Client(c, &tls.Config{ServerName: "localhost", RootCAs: testpki.NewCA().Pool()}).Handshake()
		}, ReasonPeerRejectedCert},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sc, cc := socketPair(t)
			go func() {
				defer cc.Close()
				c.client(cc)
			}()
			sc.SetDeadline(time.Now().Add(5 * time.Second))
			err := tls.Server(sc, c.server).Handshake()
			sc.Close()
			if got := HandshakeErrorReason(err); got != c.want {
				t.Errorf("server error %q classified %q, want %q", err, got, c.want)
			}
		})
	}
}

// socketPair returns both ends of a loopback TCP connection: unlike
// net.Pipe, the kernel buffers let an alert be written while the other side
// is still writing its flight.
func socketPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return server, client
}
