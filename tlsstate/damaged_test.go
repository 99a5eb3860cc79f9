package tlsstate

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
)

// TLS alert codes (RFC 8446 section 6) that crypto/tls sends for damaged records.
const (
	alertBadRecordMAC   = 20
	alertRecordOverflow = 22
)

// Record framing, from the record header (RFC 8446 section 5.1).
const (
	recordTypeAlert = 21
	recordTypeData  = 23
	// Largest record bodies crypto/tls accepts (common.go maxCiphertextTLS13,
	// maxCiphertext); one byte more is record_overflow.
	maxBodyTLS13 = 16384 + 256
	maxBodyTLS12 = 16384 + 2048
)

// alertCode returns the alert an error from crypto/tls carries. crypto/tls
// reports an alert it sent as *net.OpError{Op: "local error"} and one it
// received after the handshake as *net.OpError{Op: "remote error"}; Err is its
// unexported alert type, a uint8. tls.AlertError wraps handshake errors only,
// so the code is read by reflection and cross-checked against the name that
// tls.AlertError gives it.
func alertCode(err error, op string) (uint8, bool) {
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != op || oe.Err == nil {
		return 0, false
	}
	v := reflect.ValueOf(oe.Err)
	if v.Kind() != reflect.Uint8 || v.Type().PkgPath() != "crypto/tls" {
		return 0, false
	}
	code := uint8(v.Uint())
	if oe.Err.Error() != tls.AlertError(code).Error() {
		return 0, false
	}
	return code, true
}

// sealedRecord has c write msg and returns the one record it produced,
// taken out of c's Output.
func sealedRecord(t *testing.T, c *Engine, msg string) []byte {
	t.Helper()
	if n, err := c.Write([]byte(msg)); n != len(msg) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	rec := bytes.Clone(c.Output())
	c.Consume(len(rec))
	if len(rec) < recordHeaderLen || rec[0] != recordTypeData || int(rec[3])<<8|int(rec[4]) != len(rec)-recordHeaderLen {
		t.Fatalf("Write produced % x, want one application_data record", rec[:min(len(rec), 16)])
	}
	return rec
}

// checkAlertFlushed checks that s's Output is exactly one protected alert
// record, and that the peer c, fed it, fails with that alert's code.
// After the handshake every alert is encrypted: in TLS 1.2 the record keeps
// type alert, in TLS 1.3 it is disguised as application_data. So the code is
// asserted through the peer, which decrypts it.
func checkAlertFlushed(t *testing.T, s, c *Engine, v uint16, want uint8) {
	t.Helper()
	out := bytes.Clone(s.Output())
	outer := byte(recordTypeAlert)
	if v == tls.VersionTLS13 {
		outer = recordTypeData
	}
	if len(out) < recordHeaderLen || out[0] != outer || int(out[3])<<8|int(out[4]) != len(out)-recordHeaderLen {
		t.Fatalf("Output = % x, want one record of type %d", out, outer)
	}
	// A plaintext alert would be 2 bytes of body; a protected one carries a tag.
	if body := len(out) - recordHeaderLen; body <= 2+1 {
		t.Fatalf("alert record body is %d bytes, want an encrypted alert", body)
	}
	s.Consume(len(out))
	if c.Feed(out) != len(out) {
		t.Fatal("peer refused the alert record")
	}
	n, err := c.Read(make([]byte, 64))
	if code, ok := alertCode(err, "remote error"); n != 0 || !ok || code != want {
		t.Fatalf("peer Read of the alert = %d, %v (%T); want remote alert %d (%v)",
			n, err, err, want, tls.AlertError(want))
	}
	if c.State() != Failed {
		t.Fatalf("peer state = %v after a fatal alert, want Failed", c.State())
	}
}

// checkDead checks that a failed engine answers every further call with its
// sticky error, queues nothing more, and after Close answers ErrClosed.
func checkDead(t *testing.T, e *Engine, wire []byte) {
	t.Helper()
	sticky := e.Err()
	if sticky == nil || e.State() != Failed {
		t.Fatalf("state=%v err=%v, want Failed with an error", e.State(), sticky)
	}
	pending := e.Pending()
	calls := []struct {
		name string
		call func() error
	}{
		{"Handshake", e.Handshake},
		{"Read", func() error { _, err := e.Read(make([]byte, 64)); return err }},
		{"Write", func() error { _, err := e.Write([]byte("after the failure")); return err }},
		{"CloseWrite", e.CloseWrite},
		{"Read after more input", func() error {
			e.Feed(wire)
			_, err := e.Read(make([]byte, 64))
			return err
		}},
		{"Read after EOF", func() error { e.FeedEOF(); _, err := e.Read(make([]byte, 64)); return err }},
	}
	for _, c := range calls {
		if err := c.call(); err != sticky {
			t.Fatalf("%s after the failure = %v, want the sticky %v", c.name, err, sticky)
		}
		if e.State() != Failed || e.Pending() != pending {
			t.Fatalf("%s after the failure: state=%v pending=%d, want Failed and %d", c.name, e.State(), e.Pending(), pending)
		}
	}
	e.Close()
	if e.State() != Closed {
		t.Fatalf("state after Close = %v, want Closed", e.State())
	}
	for _, c := range calls[:3] {
		if err := c.call(); err != ErrClosed {
			t.Fatalf("%s after Close = %v, want ErrClosed", c.name, err)
		}
	}
}

// TestDamagedRecordsFailWithAlert: a record altered on the wire, or framed
// with a shortened or oversized length, makes the engine fail with the alert
// crypto/tls chooses queued in Output, and the peer that reads that alert
// sees the same code. The engine stays failed: no call panics or succeeds.
func TestDamagedRecordsFailWithAlert(t *testing.T) {
	setLen := func(rec []byte, n int) []byte {
		rec[3], rec[4] = byte(n>>8), byte(n)
		return rec
	}
	cases := []struct {
		name   string
		damage func(v uint16, rec []byte) []byte // returns what reaches the server
		alert  uint8
	}{
		{"body altered", func(_ uint16, rec []byte) []byte {
			rec[recordHeaderLen+(len(rec)-recordHeaderLen)/2] ^= 0x01
			return rec
		}, alertBadRecordMAC},
		{"tag altered", func(_ uint16, rec []byte) []byte {
			rec[len(rec)-1] ^= 0x80
			return rec
		}, alertBadRecordMAC},
		{"length cuts one tag byte", func(_ uint16, rec []byte) []byte {
			return setLen(rec, len(rec)-recordHeaderLen-1)[:len(rec)-1]
		}, alertBadRecordMAC},
		{"length cuts half the tag, rest follows", func(_ uint16, rec []byte) []byte {
			// The 8 cut bytes stay on the wire as the start of a next record.
			return setLen(rec, len(rec)-recordHeaderLen-8)
		}, alertBadRecordMAC},
		{"length shorter than a tag", func(_ uint16, rec []byte) []byte {
			return setLen(rec, 5)[:recordHeaderLen+5]
		}, alertBadRecordMAC},
		{"length zero", func(_ uint16, rec []byte) []byte {
			return setLen(rec, 0)[:recordHeaderLen]
		}, alertBadRecordMAC},
		{"length one over the limit", func(v uint16, rec []byte) []byte {
			// Only the header: crypto/tls refuses before reading the body.
			return setLen(rec, maxBody(v)+1)[:recordHeaderLen]
		}, alertRecordOverflow},
		{"length 0xffff", func(_ uint16, rec []byte) []byte {
			return setLen(rec, 0xffff)[:recordHeaderLen]
		}, alertRecordOverflow},
	}
	for _, v := range versions {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s/%s", tls.VersionName(v), tc.name), func(t *testing.T) {
				s, c, _ := openPair(t, v, Options{}, Options{})
				wire := tc.damage(v, sealedRecord(t, c, "a record damaged on the wire"))
				if s.Feed(wire) != len(wire) {
					t.Fatal("Feed refused the record")
				}
				n, err := s.Read(make([]byte, 64))
				if n != 0 || err == nil || err == ErrWantRead || err != s.Err() || s.State() != Failed {
					t.Fatalf("Read = %d, %v; state=%v err=%v; want Failed with the Read error", n, err, s.State(), s.Err())
				}
				if tc.alert == alertRecordOverflow {
					// crypto/tls sends record_overflow but returns a
					// RecordHeaderError rather than the alert.
					var rhe tls.RecordHeaderError
					if !errors.As(err, &rhe) || !strings.Contains(rhe.Msg, "oversized record") {
						t.Fatalf("Read error %v (%T), want tls.RecordHeaderError for an oversized record", err, err)
					}
				} else if code, ok := alertCode(err, "local error"); !ok || code != tc.alert {
					t.Fatalf("Read error %v (%T), want local alert %d (%v)", err, err, tc.alert, tls.AlertError(tc.alert))
				}
				checkDead(t, s, sealedRecord(t, c, "more data after the failure"))
				checkAlertFlushed(t, s, c, v, tc.alert)
			})
		}
	}
}

func maxBody(v uint16) int {
	if v == tls.VersionTLS13 {
		return maxBodyTLS13
	}
	return maxBodyTLS12
}

// TestRecordLengthAtLimitIsNotOverflow: a header announcing the largest
// allowed body is not refused; the engine waits for the body, and a body of
// garbage then fails authentication. This pins the limit the overflow cases
// above test one byte past.
func TestRecordLengthAtLimitIsNotOverflow(t *testing.T) {
	for _, v := range versions {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			s, c, _ := openPair(t, v, Options{}, Options{})
			hdr := []byte{recordTypeData, 3, 3, byte(maxBody(v) >> 8), byte(maxBody(v))}
			s.Feed(hdr)
			if _, err := s.Read(make([]byte, 64)); err != ErrWantRead || s.Pending() != 0 {
				t.Fatalf("header at the limit: Read = %v, pending=%d; want ErrWantRead and no alert", err, s.Pending())
			}
			body := pattern(maxBody(v), 9)
			if s.Feed(body) != len(body) {
				t.Fatal("Feed refused the body")
			}
			_, err := s.Read(make([]byte, 64))
			if code, ok := alertCode(err, "local error"); !ok || code != alertBadRecordMAC {
				t.Fatalf("garbage body at the limit: Read = %v, want local alert bad_record_mac", err)
			}
			checkDead(t, s, nil)
			checkAlertFlushed(t, s, c, v, alertBadRecordMAC)
		})
	}
}

// TestTruncatedRecordThenEOFFailsWithoutAlert: a FIN inside a record, in its
// header or its body, fails the engine with io.ErrUnexpectedEOF. crypto/tls
// treats it as a transport error and sends no alert (conn.go readRecordOrCCS
// records the read error without sendAlert), so Output stays empty; the
// engine is Failed, not cleanly closed, and stays failed.
func TestTruncatedRecordThenEOFFailsWithoutAlert(t *testing.T) {
	cuts := []struct {
		name string
		keep func(rec []byte) int
	}{
		{"in the header", func([]byte) int { return 3 }},
		{"after the header", func([]byte) int { return recordHeaderLen }},
		{"in the body", func(rec []byte) int { return len(rec) / 2 }},
		{"one byte short", func(rec []byte) int { return len(rec) - 1 }},
	}
	for _, v := range versions {
		for _, cut := range cuts {
			t.Run(fmt.Sprintf("%s/%s", tls.VersionName(v), cut.name), func(t *testing.T) {
				s, c, _ := openPair(t, v, Options{}, Options{})
				rec := sealedRecord(t, c, "a record cut by a FIN")
				s.Feed(rec[:cut.keep(rec)])
				if _, err := s.Read(make([]byte, 64)); err != ErrWantRead || s.State() != Open {
					t.Fatalf("partial record: Read = %v, state=%v; want ErrWantRead, Open", err, s.State())
				}
				s.FeedEOF()
				n, err := s.Read(make([]byte, 64))
				if n != 0 || !errors.Is(err, io.ErrUnexpectedEOF) || err != s.Err() {
					t.Fatalf("Read after FIN = %d, %v (Err=%v); want io.ErrUnexpectedEOF", n, err, s.Err())
				}
				if s.State() != Failed || s.PeerClosedCleanly() {
					t.Fatalf("state=%v clean=%v, want Failed and not clean", s.State(), s.PeerClosedCleanly())
				}
				if _, ok := alertCode(err, "local error"); ok || s.Pending() != 0 {
					t.Fatalf("truncation queued %d bytes (err %v); crypto/tls sends no alert for it", s.Pending(), err)
				}
				checkDead(t, s, rec)
			})
		}
	}
}
