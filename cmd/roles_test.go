package cmd

import (
	"errors"
	"testing"

	"github.com/moat-proxy/moat/certs"
)

// TestEveryRoleNamesAServerFlag: each file role and policy rule the certs
// package can report maps to a flag `moat server` really has.
func TestEveryRoleNamesAServerFlag(t *testing.T) {
	server, _, err := newRootCommand().Find([]string{"server"})
	if err != nil {
		t.Fatal(err)
	}
	var flags []string
	for _, role := range []certs.FileRole{certs.RoleCertificate, certs.RoleKey, certs.RoleCABundle} {
		flags = append(flags, fileFlag(&certs.FileError{Role: role, Path: "x.pem", Err: errors.New("bad")}))
	}
	for _, rule := range []certs.PolicyRule{certs.RuleURIs, certs.RuleAllowAll} {
		flags = append(flags, policyFlags[rule])
	}
	flags = append(flags, fileFlag(&certs.KeyMismatchError{CertFile: "c.pem", KeyFile: "k.pem"}))
	want := []string{"cert", "key", "cacert", "allow-uri", "allow-all", "cert"}
	for i, flag := range flags {
		if flag != want[i] || server.Flags().Lookup(flag) == nil {
			t.Errorf("role %d blames --%s, want --%s, a flag of moat server", i, flag, want[i])
		}
	}
}
