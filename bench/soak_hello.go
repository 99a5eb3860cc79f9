package main

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"
)

// The soak's hand-made ClientHellos start from what crypto/tls itself writes,
// so every field but the one under test is one a real client sends.
const (
	recordTypeHandshake  = 0x16
	handshakeClientHello = 1
	extServerName        = 0
	maxRecordPayload     = 1 << 14 // TLSPlaintext.length limit (RFC 8446 §5.1)
	placeholderName      = "placeholder.soak.moat.test"
)

// captureClientHello returns the records a crypto/tls client with cfg writes
// first, which is its ClientHello. No network is involved: the client writes
// into a conn that keeps the bytes and then fails the handshake.
func captureClientHello(cfg *tls.Config) ([]byte, error) {
	c := &captureConn{}
	_ = tls.Client(c, cfg).Handshake() // fails by design once the hello is written
	if len(c.written) == 0 {
		return nil, errors.New("crypto/tls wrote no ClientHello")
	}
	return c.written, nil
}

// captureConn is a net.Conn that records the first Write and fails every
// call after it.
type captureConn struct{ written []byte }

var errCaptured = errors.New("captured")

func (c *captureConn) Write(p []byte) (int, error) {
	if c.written != nil {
		return 0, errCaptured
	}
	c.written = append([]byte{}, p...)
	return len(p), nil
}
func (c *captureConn) Read([]byte) (int, error)         { return 0, errCaptured }
func (c *captureConn) Close() error                     { return nil }
func (c *captureConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *captureConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *captureConn) SetDeadline(time.Time) error      { return nil }
func (c *captureConn) SetReadDeadline(time.Time) error  { return nil }
func (c *captureConn) SetWriteDeadline(time.Time) error { return nil }

// handshakeFromRecords joins the payloads of consecutive handshake records
// and returns the one handshake message they carry.
func handshakeFromRecords(recs []byte) ([]byte, error) {
	var msg []byte
	for len(recs) > 0 {
		if len(recs) < 5 || recs[0] != recordTypeHandshake {
			return nil, errors.New("not a handshake record")
		}
		n := int(binary.BigEndian.Uint16(recs[3:5]))
		if len(recs) < 5+n {
			return nil, errors.New("truncated record")
		}
		msg = append(msg, recs[5:5+n]...)
		recs = recs[5+n:]
	}
	if len(msg) < 4 || msg[0] != handshakeClientHello {
		return nil, errors.New("not a ClientHello")
	}
	if n := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]); n != len(msg)-4 {
		return nil, fmt.Errorf("ClientHello says %d bytes, records carry %d", n, len(msg)-4)
	}
	return msg, nil
}

// helloExtensions finds the extensions block of a ClientHello message: the
// offset of its 2-byte length within msg.
func helloExtensions(msg []byte) (int, error) {
	off := 4 + 2 + 32 // handshake header, legacy_version, random
	skip := func(lenBytes int) error {
		if off+lenBytes > len(msg) {
			return errors.New("ClientHello truncated")
		}
		n := 0
		for _, b := range msg[off : off+lenBytes] {
			n = n<<8 | int(b)
		}
		off += lenBytes + n
		return nil
	}
	for _, lenBytes := range []int{1, 2, 1} { // session id, cipher suites, compression
		if err := skip(lenBytes); err != nil {
			return 0, err
		}
	}
	if off+2 > len(msg) {
		return 0, errors.New("ClientHello has no extensions")
	}
	return off, nil
}

// withServerName returns hello (records as crypto/tls writes them) with its
// server_name extension replaced by one naming name, byte for byte as given
// — NULs and all — re-framed into records of at most 16 KiB. Every length
// field that encloses the name is fixed up. The extension keeps its place,
// since some servers care about order (pre_shared_key must stay last).
func withServerName(hello []byte, name string) ([]byte, error) {
	msg, err := handshakeFromRecords(hello)
	if err != nil {
		return nil, err
	}
	extOff, err := helloExtensions(msg)
	if err != nil {
		return nil, err
	}
	exts := msg[extOff+2:]
	if int(binary.BigEndian.Uint16(msg[extOff:])) != len(exts) {
		return nil, errors.New("extensions length does not match the message")
	}
	var out []byte
	found := false
	for len(exts) > 0 {
		if len(exts) < 4 {
			return nil, errors.New("extension header truncated")
		}
		typ, n := binary.BigEndian.Uint16(exts), int(binary.BigEndian.Uint16(exts[2:]))
		if len(exts) < 4+n {
			return nil, errors.New("extension truncated")
		}
		if typ == extServerName {
			out = append(out, serverNameExtension(name)...)
			found = true
		} else {
			out = append(out, exts[:4+n]...)
		}
		exts = exts[4+n:]
	}
	if !found {
		return nil, errors.New("ClientHello has no server_name extension")
	}
	if len(out) > 0xffff {
		return nil, fmt.Errorf("extensions would be %d bytes, over the 16-bit length", len(out))
	}
	body := append([]byte{}, msg[4:extOff]...)
	body = binary.BigEndian.AppendUint16(body, uint16(len(out)))
	body = append(body, out...)
	newMsg := []byte{handshakeClientHello, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}
	return handshakeRecords(append(newMsg, body...), hello[1:3]), nil
}

// serverNameExtension is a server_name extension (RFC 6066 §3) holding one
// host_name entry.
func serverNameExtension(name string) []byte {
	e := binary.BigEndian.AppendUint16(nil, extServerName)
	e = binary.BigEndian.AppendUint16(e, uint16(len(name)+5))
	e = binary.BigEndian.AppendUint16(e, uint16(len(name)+3)) // server_name_list
	e = append(e, 0)                                          // name_type host_name
	e = binary.BigEndian.AppendUint16(e, uint16(len(name)))
	return append(e, name...)
}

// handshakeRecords frames a handshake message into records of at most
// 16 KiB each, with the given legacy record version.
func handshakeRecords(msg, version []byte) []byte {
	var out []byte
	for len(msg) > 0 {
		n := min(len(msg), maxRecordPayload)
		out = append(out, recordTypeHandshake, version[0], version[1], byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// badSNIHellos builds the two hostile ClientHellos of the bad-SNI attack: a
// 60,000-byte server name and a name with a NUL byte in the middle.
func badSNIHellos() (long, nul []byte, err error) {
	hello, err := captureClientHello(&tls.Config{
		ServerName:       placeholderName,
		MinVersion:       tls.VersionTLS12,
		CurvePreferences: []tls.CurveID{tls.X25519}, // one small key share keeps the hello under 64 KiB
	})
	if err != nil {
		return nil, nil, err
	}
	label := "a-label-of-sixty-three-bytes-to-fill-a-very-long-server-name-x"
	name := make([]byte, 0, 60000)
	for len(name) < 60000 {
		name = append(name, label...)
		name = append(name, '.')
	}
	name = append(name[:60000-len("example")], "example"...)
	if long, err = withServerName(hello, string(name)); err != nil {
		return nil, nil, err
	}
	nul, err = withServerName(hello, "legit.example\x00.evil.example")
	return long, nul, err
}
