// Package charttest renders the moat Helm chart (../moat) with helm for
// several value sets and checks the result: every manifest decodes strictly
// into the Kubernetes API types (an unknown or misspelt field is an error),
// the moat sidecar is wired as documented, wrong values are refused, and the
// flags the chart renders are parsed by the real moat binary.
//
// Run with a helm binary on PATH (or HELM=/path/to/helm):
//
//	cd helm/test && go test ./...
package charttest
