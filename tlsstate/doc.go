// Package tlsstate is moat's TLS engine: crypto/tls driven over memory, with
// no socket. Ciphertext goes in through Feed (or InputSpace and Commit, to
// read(2) straight into the engine) and comes out through Output and
// Consume; every call says what it needs next (ErrWantRead, ErrWantWrite).
// One event loop can therefore drive thousands of engines. A goroutine runs
// only while a handshake does (crypto/tls cannot resume one after a "would
// block"); the calling goroutine waits for it synchronously.
//
// Typical use in an event loop; the one rule is to flush Output after every
// call, because Read too produces output (alerts, KeyUpdate answers):
//
//	e := tlsstate.Server(cfg, tlsstate.Options{})
//	n, _ := unix.Read(fd, e.InputSpace()); e.Commit(max(n, 0))
//	m, err := e.Read(plain) // drives the handshake first; ErrWantRead: wait for input
//	upstreamWrite(plain[:m])
//	k, _ := unix.Write(fd, e.Output()); e.Consume(max(k, 0))
//	if e.Pending() > 0 { waitWritable(fd) } // flush before waiting for input
//	if err != nil && err != tlsstate.ErrWantRead { closeAfterFlush(fd) }
//	defer e.Close()
package tlsstate
