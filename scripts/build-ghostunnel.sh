#!/usr/bin/env bash
# Builds ghostunnel from its public source, with the modules it vendors, into
# ${XDG_CACHE_HOME:-$HOME/.cache}/moat-ci/ghostunnel/ghostunnel-$version and
# prints the binary's path. A cached build is reused. The benchmark uses it as
# a peer: go run ./bench run -ghostunnel "$(scripts/build-ghostunnel.sh)".
#
#   scripts/build-ghostunnel.sh              # clones the tag from GitHub
#   GHOSTUNNEL_SRC=/path/to/git/dir scripts/build-ghostunnel.sh   # a local clone or mirror
set -euo pipefail
version=${GHOSTUNNEL_VERSION:-v1.11.1}
cache="${XDG_CACHE_HOME:-$HOME/.cache}/moat-ci/ghostunnel"
bin="$cache/ghostunnel-$version"
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
  echo "$bin"; exit 0
fi
mkdir -p "$cache"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -n "${GHOSTUNNEL_SRC:-}" ]; then
  git --git-dir="$GHOSTUNNEL_SRC" archive --format=tar "$version" | tar -x -C "$work"
else
  git clone -q --depth 1 --branch "$version" https://github.com/ghostunnel/ghostunnel "$work/src" >&2
  work="$work/src"
fi
[ -d "$work/vendor" ] || { echo "build-ghostunnel: $version has no vendor/ directory" >&2; exit 1; }
# -mod=vendor: the dependencies are the ones ghostunnel ships, nothing is
# downloaded. GOTOOLCHAIN=auto lets an older local Go fetch the release the
# go.mod names. The version is stamped the way ghostunnel's own build does.
( cd "$work" && GOTOOLCHAIN=auto CGO_ENABLED=0 GOFLAGS=-mod=vendor \
    go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$bin.tmp" . ) >&2
mv "$bin.tmp" "$bin"
echo "$bin"
