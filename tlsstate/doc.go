// Package tlsstate is moat's TLS engine: crypto/tls driven over memory, with
// no socket. Ciphertext goes in through Feed (or InputSpace and Commit, to
// read(2) straight into the engine) and comes out through Output and
// Consume; every call says what it needs next (ErrWantRead, ErrWantWrite),
// so one event loop can drive thousands of engines. A goroutine runs only
// while a handshake does, because crypto/tls cannot resume a handshake after
// a "would block"; the calling goroutine waits for it synchronously.
//
// The one rule for the caller: flush Output after every call, Read included,
// since reads produce output too (alerts, KeyUpdate answers, renegotiation):
//
//	e := tlsstate.Server(cfg, tlsstate.Options{})
//	defer e.Close()
//	for {
//		n, _ := unix.Read(fd, e.InputSpace()) // wait for readability first
//		e.Commit(max(n, 0))
//		m, err := e.Read(plain) // drives the handshake first
//		upstream.Write(plain[:m])
//		k, _ := unix.Write(fd, e.Output()); e.Consume(max(k, 0))
//		if err != nil && err != tlsstate.ErrWantRead { return err }
//	}
package tlsstate
