package cmd

import (
	"github.com/moat-proxy/moat/certs"
)

// Several certificates on one listener: server mode's --cert/--key pairs
// (in order: the n-th --key belongs to the n-th --cert) and its --cert-dir
// flags may repeat. The first pair is the default, served to clients that
// send no server name or one no pair covers; see certs.Source.AddKeyPairs
// for the choice by SNI.

// pairSources loads the --cert/--key pairs: the first with --cacert, the
// others as further key pairs of it.
func (o *serverOptions) pairSources() (*certs.Source, error) {
	if nc, nk := len(o.certFiles), len(o.keyFiles); nc != nk && nc > 0 && nk > 0 {
		return nil, flagError("key", "%d --cert and %d --key given: give them in pairs, each --cert followed by its --key", nc, nk)
	}
	first, err := fileSource(firstPath(o.certFiles), firstPath(o.keyFiles), o.caFile)
	if err != nil {
		return nil, err
	}
	for i := 1; i < len(o.certFiles); i++ {
		more, err := certs.NewFileSource(o.certFiles[i], o.keyFiles[i], "")
		if err != nil {
			return nil, fileFailure(fileFlag(err), "", err)
		}
		first.AddKeyPairs(more)
	}
	return first, nil
}

// dirSources loads the --cert-dir mounts: the first with its ca.crt (or
// --cacert), the others for their tls.crt and tls.key alone.
func (o *serverOptions) dirSources() (*certs.Source, error) {
	src, err := certs.NewDirSource(o.certDirs[0], certs.DirOptions{CAFile: o.caFile, RequireCA: !o.disableAuth})
	if err != nil {
		return nil, fileFailure("cert-dir", o.certDirs[0], err)
	}
	for _, dir := range o.certDirs[1:] {
		more, err := certs.NewDirSource(dir, certs.DirOptions{KeyPairOnly: true})
		if err != nil {
			return nil, fileFailure("cert-dir", dir, err)
		}
		src.AddKeyPairs(more)
	}
	return src, nil
}

// firstPath is the first of a repeatable flag's paths, "" when none.
func firstPath(values []string) string {
	if len(values) == 0 {
		return ""
	}
	return values[0]
}
