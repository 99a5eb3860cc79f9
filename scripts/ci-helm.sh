#!/usr/bin/env bash
# ci-helm.sh: the Helm chart's CI.
#
#   1. Install a pinned helm with `go install` (cached under
#      $HOME/go/bin/helm-<version>, reused when present).
#   2. helm lint --strict on the chart's defaults (quick, readable failure),
#      and helm package (only chart files go into the package).
#   3. go test in helm/test, a module of its own: helm lint --strict and
#      helm template for every value set, strict decoding of every manifest
#      into the Kubernetes API types, assertions on the sidecar, refused
#      values, and the check that the real moat binary (built from this
#      checkout) parses every flag the chart renders.
#
# Environment: HELM_VERSION (default below), HELM (use this binary instead).
set -euo pipefail

start=$SECONDS
repo=$(cd "$(dirname "$0")/.." && pwd)
export GOTOOLCHAIN=auto
log() { printf '[ci-helm %3ds] %s\n' "$((SECONDS - start))" "$*" >&2; }

HELM_VERSION=${HELM_VERSION:-v3.22.0}
if [ -z "${HELM:-}" ]; then
	gobin="$HOME/go/bin/helm-$HELM_VERSION"
	HELM="$gobin/helm"
	# (A go-installed helm reports only "v3.22": read the module version from
	# its build info instead.)
	installed=""
	[ -x "$HELM" ] && installed=$(go version -m "$HELM" | awk '$1 == "mod" && $2 == "helm.sh/helm/v3" { print $3 }')
	if [ "$installed" = "$HELM_VERSION" ]; then
		log "using cached helm $installed ($HELM)"
	else
		log "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
		mkdir -p "$gobin"
		# Build helm with the toolchain its own go.mod asks for, outside any module.
		(cd "$gobin" && GOBIN="$gobin" GOFLAGS= go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
		log "installed helm $HELM_VERSION ($HELM)"
	fi
fi
export HELM

chart="$repo/helm/moat"
log "helm lint --strict helm/moat, helm package"
"$HELM" lint --strict --kube-version 1.31.0 "$chart"
pkg=$(mktemp -d)
trap 'rm -rf "$pkg"' EXIT
"$HELM" package --destination "$pkg" "$chart" >/dev/null
# The package holds the chart and nothing else (.helmignore).
tar -tzf "$pkg"/moat-*.tgz | sort >"$pkg/list"
if grep -v -E '^moat/(Chart\.yaml|values\.yaml|values\.schema\.json|README\.md|\.helmignore|templates/.*)$' "$pkg/list"; then
	echo "unexpected files in the chart package (above)" >&2
	exit 1
fi

cd "$repo/helm/test"
log "helm/test: go mod tidy -diff, go vet"
go mod tidy -diff
go vet ./...
log "helm/test: go test"
go test -count=1 ./...
log "PASS in $((SECONDS - start))s"
