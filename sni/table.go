// Package sni routes a TLS ClientHello to one of several services sharing
// a listener by the server name it asks for: exact names, and wildcards
// "*.example.com" that stand for one label, as in certificates.
//
//	var t sni.Table[*service]
//	t.Add("api.example.com", api)
//	t.Add("*.example.com", web)
//	t.SetDefault(web) // a name matching none, or no SNI at all
//	s, ok := t.Match(hello.ServerName)
//
// A Table is built once and then only read: Match is safe from any number
// of goroutines, and a new set of routes is a new Table.
package sni

import (
	"errors"
	"fmt"
	"strings"

	"github.com/moat-proxy/moat/certs"
)

// Table maps server names to values.
type Table[T any] struct {
	exact      map[string]T
	wild       map[string]T // "*.example.com" stored as "example.com"
	def        T
	hasDefault bool
}

// CheckPattern reports why p is not a name or wildcard a Table accepts.
func CheckPattern(p string) error {
	if p == "" {
		return errors.New("an empty name")
	}
	name := p
	if rest, ok := strings.CutPrefix(p, "*."); ok {
		name = rest
		if !strings.Contains(name, ".") {
			return fmt.Errorf("%q: a wildcard needs at least two labels after \"*.\"", p)
		}
	}
	if strings.Contains(name, "*") {
		return fmt.Errorf("%q: a wildcard is \"*.\" followed by a name", p)
	}
	if err := certs.CheckServerName(name); err != nil {
		return fmt.Errorf("%q: %w", p, err)
	}
	return nil
}

// Add routes the names p stands for to v. A pattern given twice is an
// error: which service would answer could not be told.
func (t *Table[T]) Add(p string, v T) error {
	if err := CheckPattern(p); err != nil {
		return err
	}
	p = strings.ToLower(p)
	m, key := &t.exact, p
	if rest, ok := strings.CutPrefix(p, "*."); ok {
		m, key = &t.wild, rest
	}
	if *m == nil {
		*m = make(map[string]T)
	}
	if _, dup := (*m)[key]; dup {
		return fmt.Errorf("%q is routed twice", p)
	}
	(*m)[key] = v
	return nil
}

// SetDefault routes names that match nothing, and handshakes without SNI,
// to v.
func (t *Table[T]) SetDefault(v T) { t.def, t.hasDefault = v, true }

// Match returns the value for name: an exact name first, then a wildcard
// for its parent domain, then the default.
func (t *Table[T]) Match(name string) (T, bool) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name != "" {
		if v, ok := t.exact[name]; ok {
			return v, true
		}
		if _, parent, ok := strings.Cut(name, "."); ok {
			if v, ok := t.wild[parent]; ok {
				return v, true
			}
		}
	}
	return t.def, t.hasDefault
}
