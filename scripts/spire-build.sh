#!/usr/bin/env bash
# Builds spire-server and spire-agent (SPIRE, the SPIFFE reference
# implementation) once into a cache outside the work tree, for the e2e tests
# of the Workload API certificate source. About 12 minutes cold on 2 cores;
# a no-op when both binaries are already there.
#
# SPIRE's module has replace directives, so `go install ...@version` is
# refused; a throwaway module that requires it as a tool builds it instead.
set -euo pipefail
export GOTOOLCHAIN=auto

version=v1.13.3
bin="${XDG_CACHE_HOME:-$HOME/.cache}/moat-ci/spire-$version/bin"
if [ -x "$bin/spire-server" ] && [ -x "$bin/spire-agent" ]; then
  echo "spire-build: spire-server and spire-agent $version already in $bin"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
go mod init spire-build.invalid >/dev/null 2>&1
go get -tool "github.com/spiffe/spire/cmd/spire-server@$version"
go get -tool "github.com/spiffe/spire/cmd/spire-agent@$version"
mkdir -p "$bin"
GOBIN="$bin" go install github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent
echo "spire-build: built spire-server and spire-agent $version into $bin"
