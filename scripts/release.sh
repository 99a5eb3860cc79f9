#!/usr/bin/env bash
# release.sh: build every artifact of a moat release into dist/.
#
#   scripts/release.sh --snapshot      # any commit: version v<appVersion>-snapshot.<commit>
#   scripts/release.sh                 # a clean checkout of tag v<appVersion>
#
# What it builds, for linux/amd64 and linux/arm64:
#   dist/moat_<v>_linux_<arch>            the static binary (CGO_ENABLED=0,
#                                         -trimpath, version and commit stamped)
#   dist/moat_<v>_linux_<arch>.tar.gz     binary, LICENSE, README, man pages, completions
#   dist/moat_<v>_linux_<arch>.cdx.json   CycloneDX SBOM of that binary (cyclonedx-gomod bin)
#   dist/moat_<v>_<arch>.deb, .rpm        packages (nfpm): /usr/bin/moat, man pages,
#                                         bash/zsh/fish completions, systemd units
#   dist/moat_<v>_image.oci.tar           the multi-arch image (an OCI image index with
#                                         both architectures, built with buildah)
#   dist/moat-<v>.tgz                     the Helm chart (when helm is at hand)
#   dist/SHA256SUMS                       SHA-256 of every file above
# where <v> is the version without its leading v.
#
# The images are built from packaging/Containerfile, which copies the
# cross-compiled binary onto distroless static with no RUN step: building the
# arm64 image needs no arm64 emulation.
#
# Tools: nfpm and cyclonedx-gomod are installed with `go install` at pinned
# versions into ${XDG_CACHE_HOME:-~/.cache}/moat-ci/bin and reused. buildah
# and helm are used when present (--skip-images leaves the images out).
#
# Environment:
#   RELEASE_IMAGE_BASE  base image of the release images (default the
#                       distroless image packaging/Containerfile names); a
#                       "{arch}" in it is replaced by amd64 or arm64, for a
#                       machine that holds per-architecture copies locally
#   RELEASE_PULL        buildah's --pull policy for the base (default missing)
#   HELM                helm binary (default: helm on PATH, if any)
set -euo pipefail

nfpm_version=v2.48.0
cyclonedx_version=v1.10.0
arches=(amd64 arm64)

snapshot=0
images=1
out=dist
while [ $# -gt 0 ]; do
	case "$1" in
	--snapshot) snapshot=1 ;;
	--skip-images) images=0 ;;
	--out) out=$2; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "release.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export GOTOOLCHAIN=auto
start=$SECONDS
log() { printf '[release %4ds] %s\n' "$((SECONDS - start))" "$*" >&2; }
die() { printf '[release] FAIL: %s\n' "$*" >&2; exit 1; }

# --- Version ------------------------------------------------------------------
commit=$(git rev-parse HEAD)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
app_version=$(awk '$1 == "appVersion:" { gsub(/"/, "", $2); print $2 }' helm/moat/Chart.yaml)
[ -n "$app_version" ] || die "no appVersion in helm/moat/Chart.yaml"
if [ "$snapshot" = 1 ]; then
	version="v$app_version-snapshot.$(git rev-parse --short=12 HEAD)"
	git diff --quiet HEAD -- || version+=".dirty"
else
	tag=$(git describe --exact-match --tags HEAD 2>/dev/null) || die "HEAD is not tagged; tag it v$app_version or use --snapshot"
	[ "$tag" = "v$app_version" ] || die "tag $tag does not match the chart's appVersion $app_version"
	git diff --quiet HEAD -- || die "the work tree has changes; a release is built from a clean checkout"
	version=$tag
fi
v=${version#v}
log "moat $version (commit $commit)"

rm -rf "$out"
mkdir -p "$out/man" "$out/completions"
out=$(cd "$out" && pwd)

# --- Tools --------------------------------------------------------------------
ci_bin="${XDG_CACHE_HOME:-$HOME/.cache}/moat-ci/bin"
tool() { # name module/cmd version -> path on stdout
	local bin="$ci_bin/$1" have=""
	[ -x "$bin" ] && have=$(go version -m "$bin" 2>/dev/null | awk '$1 == "mod" { print $3; exit }')
	if [ "$have" != "$3" ]; then
		log "go install $2@$3"
		(cd / && GOBIN="$ci_bin" GOFLAGS= go install "$2@$3") >&2
	fi
	echo "$bin"
}
nfpm=$(tool nfpm github.com/goreleaser/nfpm/v2/cmd/nfpm "$nfpm_version")
cyclonedx=$(tool cyclonedx-gomod github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod "$cyclonedx_version")

# --- Binaries, SBOMs ----------------------------------------------------------
ldflags="-s -w -X github.com/moat-proxy/moat/cmd.Version=$version -X github.com/moat-proxy/moat/cmd.Commit=$commit"
for arch in "${arches[@]}"; do
	log "go build linux/$arch"
	CGO_ENABLED=0 GOOS=linux GOARCH=$arch go build -trimpath -ldflags "$ldflags" -o "$out/linux-$arch/moat" .
	cp "$out/linux-$arch/moat" "$out/moat_${v}_linux_$arch"
	log "SBOM linux/$arch (CycloneDX)"
	# bin: from the build information in the binary itself, so the SBOM
	# lists exactly the modules linked into this architecture's build.
	"$cyclonedx" bin -json -licenses -std -version "$version" \
		-output "$out/moat_${v}_linux_$arch.cdx.json" "$out/linux-$arch/moat" 2>"$out/sbom-$arch.log" ||
		{ cat "$out/sbom-$arch.log" >&2; die "cyclonedx-gomod failed"; }
	rm -f "$out/sbom-$arch.log"
done

# --- Manual pages, completions -------------------------------------------------
log "man pages (cobra doc), shell completions"
go run ./internal/genman -dir "$out/man" -version "$version"
gzip -9n "$out"/man/*.1
host_arch=$(go env GOARCH)
host_moat="$out/linux-$host_arch/moat"
[ -x "$host_moat" ] || { host_moat="$out/host-moat"; go build -o "$host_moat" .; }
"$host_moat" completion bash >"$out/completions/moat.bash"
"$host_moat" completion zsh >"$out/completions/_moat"
"$host_moat" completion fish >"$out/completions/moat.fish"
rm -f "$out/host-moat"

# --- Archives -------------------------------------------------------------------
for arch in "${arches[@]}"; do
	stage="$out/stage/moat_${v}_linux_$arch"
	mkdir -p "$stage"
	cp "$out/linux-$arch/moat" LICENSE README.md CHANGELOG.md "$stage/"
	cp -r "$out/man" "$out/completions" "$stage/"
	tar -C "$out/stage" --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
		-cf - "moat_${v}_linux_$arch" | gzip -9n >"$out/moat_${v}_linux_$arch.tar.gz"
done
rm -rf "$out/stage"

# --- Packages -------------------------------------------------------------------
# nfpm does not expand variables in file paths: fill in packaging/nfpm.yaml's
# ${MOAT_*} here. The systemd units come with the packages when the tree
# has them.
units=()
for unit in packaging/systemd/moat.service packaging/systemd/moat.socket; do
	[ -f "$unit" ] && units+=("$unit")
done
[ ${#units[@]} = 2 ] || log "WARNING: packaging/systemd/moat.service or moat.socket missing: the packages carry no systemd units"
for arch in "${arches[@]}"; do
	conf="$out/nfpm-$arch.yaml"
	sed -e "s|\${MOAT_DIST}|$out|g; s|\${MOAT_ARCH}|$arch|g; s|\${MOAT_VERSION}|$v|g" packaging/nfpm.yaml >"$conf"
	for unit in "${units[@]}"; do
		# (Not conffiles: units under /usr/lib are the package's; admins
		# override them in /etc/systemd/system or with drop-ins.)
		printf '  - src: %s\n    dst: /usr/lib/systemd/system/%s\n    file_info:\n      mode: 0644\n' \
			"$unit" "$(basename "$unit")" >>"$conf"
	done
	for packager in deb rpm; do
		"$nfpm" package -f "$conf" -p "$packager" -t "$out/moat_${v}_$arch.$packager" >/dev/null
		log "package $(basename "$out/moat_${v}_$arch.$packager")"
	done
	rm "$conf"
done

# --- Images ---------------------------------------------------------------------
if [ "$images" = 1 ]; then
	command -v buildah >/dev/null || die "buildah is not installed (apt-get install buildah), or use --skip-images"
	image="localhost/moat:$version"
	buildah manifest rm "$image" >/dev/null 2>&1 || true
	buildah manifest create "$image" >/dev/null
	for arch in "${arches[@]}"; do
		base=${RELEASE_IMAGE_BASE:-gcr.io/distroless/static-debian12:nonroot}
		base=${base//\{arch\}/$arch}
		log "image linux/$arch on $base"
		buildah bud --isolation chroot --pull="${RELEASE_PULL:-missing}" --layers=false --quiet \
			--platform "linux/$arch" --build-arg BASE="$base" \
			--build-arg VERSION="$version" --build-arg COMMIT="$commit" \
			--timestamp "$SOURCE_DATE_EPOCH" \
			-f packaging/Containerfile -t "$image-$arch" "$out" >/dev/null
		got=$(buildah inspect --type image --format '{{.OCIv1.OS}}/{{.OCIv1.Architecture}}' "$image-$arch")
		[ "$got" = "linux/$arch" ] || die "image $image-$arch is $got, want linux/$arch"
		buildah manifest add "$image" "$image-$arch" >/dev/null
	done
	buildah manifest push --quiet --all "$image" "oci-archive:$out/moat_${v}_image.oci.tar:$version"
	log "image index $image (${arches[*]}) -> moat_${v}_image.oci.tar"
fi

# --- Chart ----------------------------------------------------------------------
helm=${HELM:-$(command -v helm || true)}
if [ -n "$helm" ]; then
	"$helm" package helm/moat --destination "$out" --version "$v" --app-version "$app_version" >/dev/null
	log "chart moat-$v.tgz"
else
	log "no helm: the chart is not packaged (set HELM)"
fi

# --- Checksums ------------------------------------------------------------------
rm -rf "$out"/linux-*
(cd "$out" && find . -maxdepth 1 -type f ! -name SHA256SUMS -printf '%f\n' | sort | xargs sha256sum >SHA256SUMS)
log "done: $(wc -l <"$out/SHA256SUMS") files in $out, checksums in SHA256SUMS"
