#!/usr/bin/env bash
# image-test.sh: prove the Dockerfile by building it for real and running the
# image, on a machine with no Docker engine and no registry access.
#
#   1. Build local stand-ins for the two base images the Dockerfile names:
#        - the build stage (golang:<go.mod version>-bookworm): a debootstrap'd
#          Debian bookworm (minbase + ca-certificates) with this machine's Go
#          toolchain (the one GOTOOLCHAIN=auto selects for go.mod) in
#          /usr/local/go, configured like the official golang image;
#        - the final stage (gcr.io/distroless/static-debian12:nonroot): an
#          image from scratch with what distroless static holds (/etc/passwd
#          and /etc/group with "nonroot" 65532, CA certificates, /tmp,
#          /home/nonroot), USER 65532, and no shell.
#      They are tagged with exactly the names the Dockerfile's FROM lines use,
#      and kept in buildah's storage, so later runs reuse them (set
#      IMAGE_TEST_REBUILD_BASES=1 to rebuild them).
#   2. Build the Dockerfile unmodified: buildah bud --pull=never, chroot
#      isolation (no OCI runtime needed), with the host's module cache
#      mounted read-only and GOPROXY=off (see "Modules" below).
#   3. Check the image: config (USER 65532:65532, ENTRYPOINT ["/moat"]), no
#      /bin/sh in it, the binary's build info (CGO_ENABLED=0, -trimpath,
#      stamped version), `moat version` run inside the image prints the stamped
#      version, and a probe run inside the image reports uid/gid 65532.
#
# Needs root (debootstrap, buildah storage). Installs buildah and debootstrap
# with apt-get when they are missing.
#
# Environment:
#   DEBIAN_MIRROR               default http://deb.debian.org/debian
#   IMAGE_TEST_REBUILD_BASES=1  rebuild the base stand-ins even when present
#   IMAGE_TEST_MODULES=network  let the build download modules itself (GOPROXY)
#   IMAGE_TEST_KEEP=1           keep the built moat image (localhost/moat:image-test)
set -euo pipefail

start=$SECONDS
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export GOTOOLCHAIN=auto

log() { printf '[image-test %3ds] %s\n' "$((SECONDS - start))" "$*" >&2; }
die() { printf '[image-test] FAIL: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap and buildah storage)"

need=()
command -v buildah >/dev/null || need+=(buildah)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" ca-certificates >/dev/null
fi

mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
iso=(--isolation chroot)

# --- What the Dockerfile asks for -------------------------------------------
mapfile -t froms < <(awk 'toupper($1) == "FROM" { for (i = 2; i <= NF; i++) if ($i !~ /^--/) { print $i; break } }' Dockerfile)
[ ${#froms[@]} -eq 2 ] || die "expected two FROM lines in Dockerfile, found: ${froms[*]}"
build_base=${froms[0]}
final_base=${froms[1]}

# The toolchain line names the Go release moat is built with; the go line is
# only the minimum language version.
gomod_version=$(awk '$1 == "toolchain" { sub(/^go/, "", $2); print $2; exit }' go.mod)
[ -n "$gomod_version" ] || gomod_version=$(awk '$1 == "go" { print $2; exit }' go.mod)
[ "$build_base" = "golang:${gomod_version}-bookworm" ] ||
	die "Dockerfile build stage is $build_base, but go.mod's toolchain is go$gomod_version (want golang:${gomod_version}-bookworm)"
[ "$final_base" = "gcr.io/distroless/static-debian12:nonroot" ] ||
	die "the final-stage stand-in mimics gcr.io/distroless/static-debian12:nonroot, Dockerfile uses $final_base"

goroot=$(go env GOROOT)
goversion=$("$goroot/bin/go" env GOVERSION)
[ "$goversion" = "go$gomod_version" ] || die "local toolchain is $goversion, want go$gomod_version"

# Short names are resolved by buildah to docker.io/library/...; tag that
# fully qualified name so no registry lookup is involved.
build_ref=docker.io/library/$build_base
final_ref=$final_base
standin_label=io.moat.image-test.standin

work=$(mktemp -d /tmp/moat-image-test.XXXXXX)
containers=()
cleanup() {
	local c
	for c in "${containers[@]}"; do buildah rm "$c" >/dev/null 2>&1 || true; done
	rm -rf "$work"
}
trap cleanup EXIT

new_container() { # image -> $ctr (removed on exit); not in a subshell, so that cleanup knows it
	ctr=$(buildah from --pull=never "$1")
	containers+=("$ctr")
}

have_standin() { # ref label-value
	[ "${IMAGE_TEST_REBUILD_BASES:-0}" != 1 ] || return 1
	local v
	v=$(buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"$standin_label\"}}" "$1" 2>/dev/null) || return 1
	[ "$v" = "$2" ]
}

# --- Stand-in for the build stage -------------------------------------------
build_standin="golang-$goversion-bookworm-v1"
if have_standin "$build_ref" "$build_standin"; then
	log "reusing stand-in $build_ref"
else
	log "debootstrap bookworm (minbase + ca-certificates) from $mirror"
	debootstrap --variant=minbase --include=ca-certificates bookworm "$work/golang-rootfs" "$mirror" \
		>"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
	rm -rf "$work/golang-rootfs/var/cache/apt/archives/"*.deb "$work/golang-rootfs/var/lib/apt/lists/"*
	log "adding $goversion from $goroot"
	mkdir -p "$work/golang-rootfs/usr/local/go" "$work/golang-rootfs/go/bin" "$work/golang-rootfs/go/src"
	cp -a "$goroot/." "$work/golang-rootfs/usr/local/go/"
	chmod -R u+w "$work/golang-rootfs/usr/local/go"
	chmod 1777 "$work/golang-rootfs/go"
	c=$(buildah from scratch)
	containers+=("$c")
	buildah add "$c" "$work/golang-rootfs" / >/dev/null
	# Same configuration as the official golang image.
	buildah config \
		--env PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		--env GOLANG_VERSION="$gomod_version" \
		--env GOPATH=/go \
		--env GOTOOLCHAIN=local \
		--workingdir /go \
		--cmd bash \
		--label "$standin_label=$build_standin" \
		"$c"
	buildah rmi "$build_ref" >/dev/null 2>&1 || true # the previous stand-in, if unused
	buildah commit --quiet "$c" "$build_ref" >/dev/null
	rm -rf "$work/golang-rootfs"
	log "tagged stand-in $build_ref"
fi

# --- Stand-in for the final stage -------------------------------------------
final_standin="distroless-static-debian12-nonroot-v2"
if have_standin "$final_ref" "$final_standin"; then
	log "reusing stand-in $final_ref"
else
	r="$work/static-rootfs"
	mkdir -p "$r/etc/ssl/certs" "$r/tmp" "$r/home" "$r/root"
	# The users and groups of gcr.io/distroless/static-debian12.
	cat >"$r/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
	cat >"$r/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
EOF
	printf 'hosts: files dns\n' >"$r/etc/nsswitch.conf"
	cert_src=/etc/ssl/certs/ca-certificates.crt
	[ -s "$cert_src" ] || die "no $cert_src on this machine for the final-stage stand-in"
	cp "$cert_src" "$r/etc/ssl/certs/ca-certificates.crt"
	chmod 1777 "$r/tmp"
	chmod 0700 "$r/root"
	c=$(buildah from scratch)
	containers+=("$c")
	buildah add "$c" "$r" / >/dev/null
	buildah add --chown 65532:65532 "$c" "$(mktemp -d "$work/home.XXXX")" /home/nonroot >/dev/null
	buildah config \
		--env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		--env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
		--user 65532 \
		--workingdir /home/nonroot \
		--label "$standin_label=$final_standin" \
		"$c"
	buildah rmi "$final_ref" >/dev/null 2>&1 || true
	buildah commit --quiet "$c" "$final_ref" >/dev/null
	log "tagged stand-in $final_ref"
fi

# --- Build the Dockerfile, unmodified ----------------------------------------
version="image-test-$(git rev-parse --short HEAD 2>/dev/null || echo nogit)"
commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)
image=localhost/moat:image-test
# Modules: by default the host downloads them (go mod download, through the
# host's GOPROXY and trust store) and the build gets that module cache mounted
# read-only at the golang image's GOMODCACHE, with GOPROXY=off: the Dockerfile's
# own `go mod download && go mod verify` then checks every module against
# go.sum without network. (TLS to the proxy from inside the chroot fails here:
# this machine reaches it through an interception CA the Debian bundle does
# not have.) IMAGE_TEST_MODULES=network lets the build download them itself.
bud_mod=()
if [ "${IMAGE_TEST_MODULES:-cache}" = network ]; then
	bud_mod=(--build-arg GOPROXY="${GOPROXY:-$(go env GOPROXY)}")
else
	go mod download
	modcache=$(go env GOMODCACHE)
	bud_mod=(--build-arg GOPROXY=off --volume "$modcache:/go/pkg/mod:ro")
fi
log "buildah bud --pull=never -t $image (VERSION=$version, modules: ${IMAGE_TEST_MODULES:-cache})"
buildah rmi "$image" >/dev/null 2>&1 || true # a kept image from an earlier run
build_start=$SECONDS
buildah bud "${iso[@]}" --pull=never --layers=false \
	--build-arg VERSION="$version" \
	--build-arg COMMIT="$commit" \
	"${bud_mod[@]}" \
	-f Dockerfile -t "$image" . >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; die "buildah bud failed"; }
log "image built in $((SECONDS - build_start))s"

# --- Check the image ---------------------------------------------------------
user=$(buildah inspect --type image --format '{{.OCIv1.Config.User}}' "$image")
[ "$user" = "65532:65532" ] || die "image USER is '$user', want 65532:65532"
entrypoint=$(buildah inspect --type image --format '{{range .OCIv1.Config.Entrypoint}}<{{.}}>{{end}}' "$image")
[ "$entrypoint" = '</moat>' ] || die "image ENTRYPOINT is $entrypoint, want [\"/moat\"]"
label=$(buildah inspect --type image --format '{{index .OCIv1.Config.Labels "org.opencontainers.image.version"}}' "$image")
[ "$label" = "$version" ] || die "image version label is '$label', want $version"
log "config: USER $user, ENTRYPOINT $entrypoint"

new_container "$image"
mnt=$(buildah mount "$ctr")
for sh in bin/sh bin/bash usr/bin/sh busybox; do
	[ ! -e "$mnt/$sh" ] || die "final image contains /$sh; it should need no shell"
done
[ -x "$mnt/moat" ] || die "/moat is missing or not executable"
[ -s "$mnt/etc/ssl/certs/ca-certificates.crt" ] || die "final image has no CA certificates"
[ "$(stat -c %u:%g "$mnt/home/nonroot")" = 65532:65532 ] || die "/home/nonroot is not owned by 65532"
buildinfo=$("$goroot/bin/go" version -m "$mnt/moat")
buildah umount "$ctr" >/dev/null
head -1 <<<"$buildinfo" | grep -q ": go$gomod_version\$" || die "moat not built with go$gomod_version: $(head -1 <<<"$buildinfo")"
grep -q 'build	CGO_ENABLED=0' <<<"$buildinfo" || die "moat not built with CGO_ENABLED=0"
grep -q 'build	-trimpath=true' <<<"$buildinfo" || die "moat not built with -trimpath"
# (With -trimpath the build info leaves -ldflags out; `moat version` below
# checks the stamping.)
log "binary: go$gomod_version, CGO_ENABLED=0, -trimpath"

out=$(buildah run "${iso[@]}" "$ctr" -- /moat version) || die "moat version failed in the image"
log "moat version in the image: $out"
grep -q "moat $version (commit $commit," <<<"$out" || die "moat version printed '$out', want version $version and commit $commit"

# A static probe, mounted read-only into the same container, reports the
# identity the image's processes get.
mkdir -p "$work/probe"
cat >"$work/probe/main.go" <<'EOF'
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Printf("uid=%d gid=%d euid=%d\n", os.Getuid(), os.Getgid(), os.Geteuid())
	if err := os.WriteFile("/root-owned-probe", []byte("x"), 0o600); err == nil {
		fmt.Println("wrote to / (should not be possible as non-root)")
		os.Exit(1)
	}
}
EOF
(cd "$work/probe" && CGO_ENABLED=0 GOFLAGS= "$goroot/bin/go" build -o probe main.go)
id_out=$(buildah run "${iso[@]}" --volume "$work/probe/probe:/probe:ro" "$ctr" -- /probe) ||
	die "probe failed in the image: $id_out"
[ "$id_out" = "uid=65532 gid=65532 euid=65532" ] || die "image runs as '$id_out', want uid=65532 gid=65532"
log "runs as $id_out"

if [ "${IMAGE_TEST_KEEP:-0}" != 1 ]; then
	cleanup
	trap - EXIT
	buildah rmi "$image" >/dev/null
fi
log "PASS in $((SECONDS - start))s"
