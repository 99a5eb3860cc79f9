// Package certs loads, reloads, generates and inspects the certificates moat
// serves and trusts, and decides which client certificates are allowed in.
//
// A server with a Kubernetes TLS Secret mounted at /tls, reloaded in place and
// requiring client certificates whose SPIFFE ID is allowed:
//
//	src, err := certs.NewDirSource("/tls", certs.DirOptions{}) // tls.crt, tls.key, optional ca.crt
//	if err != nil {
//		return err
//	}
//	go src.Watch(ctx, func(err error) { log.Print("certificate reload: ", err) })
//	policy := certs.Policy{URIs: []string{"spiffe://cluster.local/ns/web/sa/frontend"}}
//	ln, err := tls.Listen("tcp", ":8443", src.ServerTLSConfig(policy, true))
//
// Every tls.Config callback reads the material through an atomic pointer, so
// a reload is a swap: a handshake sees either the old certificate, key and CA
// bundle or the new ones, never a mix, and a reload that fails keeps the old
// material in service. Parsing (Source.Reload) is separate from noticing that
// files changed (Source.Watch).
//
// NewWorkloadSource takes the same place for the SPIFFE Workload API: the
// certificate and key are the X.509-SVID a SPIRE agent hands this process,
// peers are verified against the trust bundle of their own trust domain, and
// each SVID the agent pushes is swapped in like a reloaded file (see
// workload.go).
package certs
