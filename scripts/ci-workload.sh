#!/usr/bin/env bash
# CI step for the SPIFFE Workload API: makes sure spire-server and
# spire-agent are built in the cache before `go test ./...`, whose e2e tests
# run them (and fail under CI=true when they are missing). A no-op with a
# warm cache; about 12 minutes on 2 cores without one.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/spire-build.sh
