#!/usr/bin/env bash
# soak.sh: moat under hostile load, inside a 128 MiB memory cgroup, with a
# legitimate mTLS client measuring whether it still gets through.
#
#   scripts/soak.sh                              # build moat from this tree, 60 s, every attack
#   scripts/soak.sh -duration 30s -json out.json
#   scripts/soak.sh -moat /tmp/moat-before       # test a prebuilt binary (compare before/after)
#   scripts/soak.sh -attacks silent,bigcert -bigcert 512
#
# Every argument goes to `bench soak` (bench soak -h lists them). The script
# builds moat (unless -moat is given) and the bench tool, and runs the tool
# on CPU 1 while moat gets CPU 0 (taskset, when there are two CPUs), so the
# attack traffic does not steal moat's core. The tool creates the memory
# cgroup moat-soak-<pid> (cgroup v1 memory hierarchy or cgroup v2), moves
# moat into it and removes it at the end; this script removes it as well if
# the tool dies first. Creating cgroups needs root: without it, or without a
# writable memory hierarchy, moat runs unlimited and the report says so.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export GOTOOLCHAIN=auto

tmp=$(mktemp -d /tmp/moat-soak-sh.XXXXXX)
cgroup=moat-soak-$$
cleanup() {
	for dir in /sys/fs/cgroup/memory/"$cgroup" /sys/fs/cgroup/"$cgroup"; do
		[ -d "$dir" ] && rmdir "$dir" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

args=("$@")
have_moat=
for a in "$@"; do
	case $a in -moat | --moat | -moat=* | --moat=*) have_moat=1 ;; esac
done
if [ -z "$have_moat" ]; then
	rev=$(git rev-parse --short HEAD 2>/dev/null || echo "an unknown revision")
	if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
		rev="$rev + uncommitted changes"
	fi
	echo "soak.sh: building moat from $rev" >&2
	go build -o "$tmp/moat" .
	args=(-moat "$tmp/moat" -label "(built from $rev)" "${args[@]}")
fi
go build -o "$tmp/bench" ./bench

pin=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
	pin=(taskset -c 1)
fi
"${pin[@]}" "$tmp/bench" soak -cgroup-name "$cgroup" "${args[@]}"
