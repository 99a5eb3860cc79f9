#!/usr/bin/env bash
# kube-apiserver-build.sh: build a real kube-apiserver and kubectl from the Go
# module proxy, once, into a cache that later runs reuse in seconds.
#
#   bash scripts/kube-apiserver-build.sh          # prints the cache directory
#
# k8s.io/kubernetes is not meant to be required as a module: its go.mod asks
# for its k8s.io staging modules at v0.0.0 and replaces them with
# ./staging/... paths, which do not apply to a module that requires it. So
# the build runs in a throwaway module that requires k8s.io/kubernetes at
# KUBE_VERSION and replaces every staging module it names with the matching
# published v0.x release (read from k8s.io/kubernetes's own go.mod, so a new
# release brings its new staging modules along). The binaries' version is
# stamped with -ldflags as the Kubernetes release build does, so that kubectl
# and helm can parse what /version answers.
#
# The result, $cache/kube-$KUBE_VERSION/{kube-apiserver,kubectl,VERSION}, is
# kept; a cold build takes about 10 minutes and 3 GB (module and build cache)
# on 2 cores. The script exits 0 and prints the directory when the binaries
# are there; otherwise it exits 1 with the reason on stderr.
#
# Environment: KUBE_VERSION (default below), XDG_CACHE_HOME.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
export GOTOOLCHAIN=auto GOFLAGS=-mod=mod
cache="${XDG_CACHE_HOME:-$HOME/.cache}/moat-ci/kube-$KUBE_VERSION"
start=$SECONDS
log() { printf '[kube-build %4ds] %s\n' "$((SECONDS - start))" "$*" >&2; }

if [ -x "$cache/kube-apiserver" ] && [ -x "$cache/kubectl" ] &&
	[ "$(cat "$cache/VERSION" 2>/dev/null)" = "$KUBE_VERSION" ]; then
	echo "$cache"
	exit 0
fi

mkdir -p "$cache"
work="$cache/build"
rm -rf "$work"
mkdir -p "$work"
cd "$work"

log "reading k8s.io/kubernetes@$KUBE_VERSION's go.mod"
gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
	sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
[ -f "$gomod" ] || { echo "kube-build: no go.mod for k8s.io/kubernetes@$KUBE_VERSION" >&2; exit 1; }
staging_version="v0.${KUBE_VERSION#v1.}"
{
	echo "module moat.local/kubebuild"
	echo
	echo "go 1.26"
	echo
	echo "require k8s.io/kubernetes $KUBE_VERSION"
	echo
	# "	k8s.io/api => ./staging/src/k8s.io/api" -> pinned release
	awk -v v="$staging_version" '$2 == "=>" && $3 ~ /^\.\/staging\// { printf "replace %s => %s %s\n", $1, $1, v }' "$gomod"
} >go.mod
log "$(grep -c '^replace' go.mod) staging modules pinned at $staging_version"

commit=$(sed -n 's/.*"Origin".*"Hash": *"\([0-9a-f]*\)".*/\1/p' \
	"$(dirname "$gomod")/$KUBE_VERSION.info" 2>/dev/null || true)
minor=${KUBE_VERSION#v1.}
minor=${minor%%.*}
build_date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
	ldflags+=" -X $pkg.gitCommit=${commit:-0000000000000000000000000000000000000000}"
	ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
done

log "resolving kube-apiserver and kubectl's dependencies"
go get "k8s.io/kubernetes/cmd/kube-apiserver@$KUBE_VERSION" "k8s.io/kubernetes/cmd/kubectl@$KUBE_VERSION"
for cmd in kube-apiserver kubectl; do
	log "go build $cmd (the slow part on a cold cache)"
	go build -trimpath -ldflags "-s -w$ldflags" -o "$cache/$cmd.new" "k8s.io/kubernetes/cmd/$cmd"
	mv "$cache/$cmd.new" "$cache/$cmd"
done
echo "$KUBE_VERSION" >"$cache/VERSION"
cd "$cache"
rm -rf "$work"
log "built $("$cache/kubectl" version --client 2>/dev/null | head -1)"
echo "$cache"
