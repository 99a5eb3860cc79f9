package certs

import (
	"crypto/x509"
	"slices"
	"strings"
)

// Overlap is a server name two of the inspected chains both cover: given
// as --cert pairs in the order inspected, only Served is ever served for
// it (see sniIndex.pick), which is usually a mistake.
type Overlap struct {
	Name   string `json:"name"`   // a DNS name, IP or wildcard both leaves cover
	Other  string `json:"other"`  // the other file
	Served string `json:"served"` // the file served for Name, in this order
}

// serverNames are the names a leaf is chosen for by SNI: its DNS and IP
// SANs (crypto/x509 matches no others; the subject CN is ignored).
func serverNames(leaf *x509.Certificate) []string {
	names := []string{}
	for _, d := range leaf.DNSNames {
		names = append(names, normalName(d))
	}
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

// addOverlaps fills in each report's Overlaps from the leaves of chains
// (aligned with reports), pairing every report with every other.
func addOverlaps(reports []Report, chains [][]*x509.Certificate) {
	for i := range reports {
		for j := i + 1; j < len(reports); j++ {
			for _, name := range sharedNames(chains[i][0], chains[j][0]) {
				served := reports[i].File
				if coverage(chains[j][0], name) > coverage(chains[i][0], name) {
					served = reports[j].File
				}
				reports[i].Overlaps = append(reports[i].Overlaps, Overlap{Name: name, Other: reports[j].File, Served: served})
				reports[j].Overlaps = append(reports[j].Overlaps, Overlap{Name: name, Other: reports[i].File, Served: served})
			}
		}
	}
}

// sharedNames lists the names of a and b that both cover: a name of one the
// other covers exactly or by wildcard, and a wildcard both carry.
func sharedNames(a, b *x509.Certificate) []string {
	var shared []string
	for _, pair := range [][2]*x509.Certificate{{a, b}, {b, a}} {
		mine, other := pair[0], pair[1]
		for _, name := range serverNames(mine) {
			covered := false
			if strings.HasPrefix(name, "*.") {
				covered = slices.Contains(serverNames(other), name)
			} else {
				covered = coverage(other, name) != coversNot
			}
			if covered && !slices.Contains(shared, name) {
				shared = append(shared, name)
			}
		}
	}
	return shared
}
