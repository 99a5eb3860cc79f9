package certs

// Files returns the paths of the Source's files (certificate, key, CA
// bundle): what it reads again when it reloads, in directories Watch
// watches. A process that confines itself must keep reading them, and
// their directories whole, so that a Kubernetes ..data swap, which
// replaces the files' targets, still reads. A static Source has none.
func (s *Source) Files() []string {
	if s.static {
		return nil
	}
	return s.files()
}
