package proxy

// HeldBytes is heldBytes, for the tests that bound what a server holds.
func (s *Server) HeldBytes() int64 { return s.heldBytes() }
