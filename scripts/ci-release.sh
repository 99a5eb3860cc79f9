#!/usr/bin/env bash
# ci-release.sh: the release artifacts' CI.
#
#   1. scripts/release.sh --snapshot into a temporary dist/: binaries for
#      linux/amd64 and linux/arm64, SBOMs, .deb and .rpm, the multi-arch
#      image, the chart, SHA256SUMS.
#   2. Check each artifact: checksums; static, -trimpath, stamped binaries of
#      the right architecture; SBOMs that are CycloneDX and list moat's
#      modules; package contents (binary, man pages, completions, systemd
#      units) with dpkg-deb and rpm; the image index holds both
#      architectures, the amd64 image runs `moat version` as uid 65532.
#   3. Install the amd64 .deb with dpkg on this machine, run `moat version`
#      and `man moat` from it, and remove it again.
#   4. actionlint on .github/workflows/ (the publishing workflow cannot run
#      here: it needs GitHub's runners, a registry and OIDC for cosign).
#   5. helm-docs: helm/moat/README.md is what helm-docs generates from
#      values.yaml, and every value has a description.
#
# The images' base is distroless static, which no registry here serves: like
# scripts/image-test.sh, this script makes a stand-in per architecture (the
# same files: passwd/group with nonroot 65532, CA certificates; no shell, no
# RUN step needed) and points release.sh at it with RELEASE_IMAGE_BASE.
#
# Needs root (dpkg -i, buildah storage). Installs buildah and rpm with
# apt-get when missing; actionlint and helm-docs with go install into
# ${XDG_CACHE_HOME:-~/.cache}/moat-ci/bin.
set -euo pipefail

actionlint_version=v1.7.12
helmdocs_version=v1.14.2

start=$SECONDS
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export GOTOOLCHAIN=auto
log() { printf '[ci-release %4ds] %s\n' "$((SECONDS - start))" "$*" >&2; }
die() { printf '[ci-release] FAIL: %s\n' "$*" >&2; exit 1; }

need=()
command -v buildah >/dev/null || need+=(buildah)
command -v rpm >/dev/null || need+=(rpm)
command -v man >/dev/null || need+=(man-db)
command -v jq >/dev/null || need+=(jq)
command -v shellcheck >/dev/null || need+=(shellcheck) # actionlint checks run: scripts with it
if [ ${#need[@]} -gt 0 ]; then
	log "installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

ci_bin="${XDG_CACHE_HOME:-$HOME/.cache}/moat-ci/bin"
tool() { # name module/cmd version -> path
	local bin="$ci_bin/$1" have=""
	[ -x "$bin" ] && have=$(go version -m "$bin" 2>/dev/null | awk '$1 == "mod" { print $3; exit }')
	if [ "$have" != "$3" ]; then
		log "go install $2@$3"
		(cd / && GOBIN="$ci_bin" GOFLAGS= go install "$2@$3") >&2
	fi
	echo "$bin"
}

work=$(mktemp -d /tmp/moat-ci-release.XXXXXX)
installed=0
cleanup() {
	[ "$installed" = 0 ] || dpkg -P moat >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

# --- 4, 5 first: seconds, and a readable failure -------------------------------
actionlint=$(tool actionlint github.com/rhysd/actionlint/cmd/actionlint "$actionlint_version")
log "actionlint .github/workflows"
"$actionlint" -no-color .github/workflows/*.yml

helmdocs=$(tool helm-docs github.com/norwoodj/helm-docs/cmd/helm-docs "$helmdocs_version")
log "helm-docs: helm/moat/README.md up to date, every value described"
cp -r helm/moat "$work/chart"
"$helmdocs" --chart-search-root "$work/chart" --log-level warning >/dev/null
if ! diff -u helm/moat/README.md "$work/chart/README.md"; then
	die "helm/moat/README.md is not what helm-docs $helmdocs_version generates (above); run: $helmdocs --chart-search-root helm/moat"
fi
# Rows of the values table: | key | type | default | description |
undescribed=$(awk -F' \\| ' '/^\| [a-zA-Z]/ && NF >= 4 && $4 ~ /^ *\|? *$/ { print $1 }' helm/moat/README.md)
[ -z "$undescribed" ] || die "values without a description (a '# --' comment in values.yaml): $undescribed"
rows=$(grep -c '^| [a-zA-Z]' helm/moat/README.md || true)
[ "$rows" -gt 30 ] || die "the values table has only $rows rows"

# --- 1. Build ---------------------------------------------------------------------
standin_label=io.moat.ci-release.standin
standin_version=distroless-static-nonroot-v1
for arch in amd64 arm64; do
	ref="localhost/moat-release-base:$arch"
	have=$(buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"$standin_label\"}}/{{.OCIv1.Architecture}}" "$ref" 2>/dev/null || true)
	[ "$have" = "$standin_version/$arch" ] && continue
	log "stand-in base image $ref"
	r="$work/base-$arch"
	mkdir -p "$r/etc/ssl/certs" "$r/tmp" "$r/home/nonroot"
	printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$r/etc/passwd"
	printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$r/etc/group"
	cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/"
	chmod 1777 "$r/tmp"
	chown 65532:65532 "$r/home/nonroot"
	c=$(buildah from scratch)
	buildah add "$c" "$r" / >/dev/null
	buildah config --arch "$arch" --os linux --user 65532 --workingdir /home/nonroot \
		--env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt --label "$standin_label=$standin_version" "$c"
	buildah rmi "$ref" >/dev/null 2>&1 || true
	buildah commit --quiet "$c" "$ref" >/dev/null
	buildah rm "$c" >/dev/null
done

dist="$work/dist"
# The helm scripts/ci-helm.sh installed (it runs first in .ci/run) packages the chart.
helm_default="$HOME/go/bin/helm-${HELM_VERSION:-v3.22.0}/helm"
[ -z "${HELM:-}" ] && [ -x "$helm_default" ] && export HELM="$helm_default"
RELEASE_IMAGE_BASE='localhost/moat-release-base:{arch}' RELEASE_PULL=never \
	bash scripts/release.sh --snapshot --out "$dist"
version=$(cd "$dist" && ls moat_*_linux_amd64 | sed 's/^moat_\(.*\)_linux_amd64$/v\1/')
v=${version#v}
commit=$(git rev-parse HEAD)

# --- 2. Check ------------------------------------------------------------------------
log "checksums"
(cd "$dist" && sha256sum --quiet -c SHA256SUMS) || die "SHA256SUMS does not match"
for f in "moat_${v}_linux_amd64" "moat_${v}_linux_arm64" "moat_${v}_linux_amd64.tar.gz" "moat_${v}_amd64.deb" \
	"moat_${v}_arm64.rpm" "moat_${v}_linux_arm64.cdx.json" "moat_${v}_image.oci.tar"; do
	grep -q "  $f\$" "$dist/SHA256SUMS" || die "$f is not in SHA256SUMS"
done

for arch in amd64 arm64; do
	bin="$dist/moat_${v}_linux_$arch"
	info=$(go version -m "$bin")
	grep -q "build	GOARCH=$arch\$" <<<"$info" || die "$bin: not built for $arch"
	grep -q 'build	CGO_ENABLED=0' <<<"$info" || die "$bin: not static (CGO_ENABLED=0)"
	grep -q 'build	-trimpath=true' <<<"$info" || die "$bin: not built with -trimpath"
	file "$bin" | grep -q 'statically linked' || die "$bin: $(file "$bin")"
	sbom="$dist/moat_${v}_linux_$arch.cdx.json"
	[ "$(jq -r .bomFormat "$sbom")" = CycloneDX ] || die "$sbom is not a CycloneDX document"
	[ "$(jq -r .metadata.component.version "$sbom")" = "$version" ] || die "$sbom: main component version is not $version"
	for mod in github.com/spf13/cobra github.com/prometheus/client_golang golang.org/x/sys; do
		jq -e --arg m "$mod" '[.components[].name] | index($m)' "$sbom" >/dev/null || die "$sbom does not list $mod"
	done
	tar -tzf "$dist/moat_${v}_linux_$arch.tar.gz" | grep -q "^moat_${v}_linux_$arch/moat\$" || die "archive $arch has no binary"
done
out=$("$dist/moat_${v}_linux_amd64" version)
grep -q "^moat $version (commit $commit," <<<"$out" || die "moat version printed '$out'"
if [ -n "${HELM:-}" ]; then
	grep -q "  moat-$v.tgz\$" "$dist/SHA256SUMS" || die "the chart moat-$v.tgz is not in SHA256SUMS"
	tar -xzOf "$dist/moat-$v.tgz" moat/Chart.yaml | grep -q "^version: $v\$" || die "the packaged chart's version is not $v"
fi
log "binaries: static, -trimpath, $version, commit stamped; SBOMs list the modules"

want_files=(/usr/bin/moat /usr/share/man/man1/moat.1.gz /usr/share/man/man1/moat-server.1.gz
	/usr/share/bash-completion/completions/moat /usr/share/fish/vendor_completions.d/moat.fish)
units=()
[ -f packaging/systemd/moat.service ] && units=(/usr/lib/systemd/system/moat.service /usr/lib/systemd/system/moat.socket)
deb_list=$(dpkg-deb -c "$dist/moat_${v}_amd64.deb" | awk '{ print $6 }' | sed 's|^\.||')
rpm_list=$(rpm -qlp "$dist/moat_${v}_arm64.rpm" 2>/dev/null)
for f in "${want_files[@]}" "${units[@]}" /usr/share/zsh/vendor-completions/_moat; do
	grep -qx "$f" <<<"$deb_list" || die ".deb lacks $f"
done
for f in "${want_files[@]}" "${units[@]}" /usr/share/zsh/site-functions/_moat; do
	grep -qx "$f" <<<"$rpm_list" || die ".rpm lacks $f"
done
[ "$(dpkg-deb -f "$dist/moat_${v}_arm64.deb" Architecture)" = arm64 ] || die "arm64 .deb has the wrong Architecture"
[ "$(rpm -qp --qf '%{ARCH}' "$dist/moat_${v}_arm64.rpm" 2>/dev/null)" = aarch64 ] || die "arm64 .rpm has the wrong ARCH"
log "packages: binary, man pages, completions${units:+, systemd units}"

image="localhost/moat:$version"
archs=$(buildah manifest inspect "$image" | jq -r '[.manifests[].platform.architecture] | sort | join(",")')
[ "$archs" = amd64,arm64 ] || die "image index $image holds $archs, want amd64,arm64"
c=$(buildah from --pull=never "$image-amd64")
out=$(buildah run --isolation chroot "$c" -- /moat version)
buildah rm "$c" >/dev/null
grep -q "^moat $version " <<<"$out" || die "moat version in the image printed '$out'"
[ "$(buildah inspect --type image --format '{{.OCIv1.Config.User}}' "$image-arm64")" = 65532:65532 ] || die "arm64 image does not run as 65532"
c=$(buildah from --pull=never --arch arm64 "$image-arm64")
mnt=$(buildah mount "$c")
go version -m "$mnt/moat" | grep -q "build	GOARCH=arm64\$" || die "the arm64 image's /moat is not an arm64 binary"
buildah umount "$c" >/dev/null
buildah rm "$c" >/dev/null
for ref in "$image" "$image-amd64" "$image-arm64"; do buildah rmi "$ref" >/dev/null 2>&1 || buildah manifest rm "$ref" >/dev/null 2>&1 || true; done
log "image index: amd64 and arm64; moat version runs in the amd64 image"

# --- 3. Install the .deb --------------------------------------------------------------
if [ "$(dpkg-query -W -f '${db:Status-Status}' moat 2>/dev/null)" = installed ]; then
	die "a moat package is already installed on this machine; remove it first (dpkg -r moat)"
fi
dpkg -i "$dist/moat_${v}_amd64.deb" >/dev/null
installed=1
out=$(/usr/bin/moat version)
grep -q "^moat $version " <<<"$out" || die "installed moat version printed '$out'"
page=$(MANPAGER=cat MANWIDTH=80 man moat 2>&1) || die "man moat: $page"
grep -q "moat - moat is a sidecar TLS termination proxy" <<<"$page" || die "man moat shows: $(head -5 <<<"$page")"
MANPAGER=cat man moat-server | grep -q -- "--listen" || die "man moat-server does not document --listen"
dpkg -P moat >/dev/null
installed=0
for f in /usr/bin/moat /usr/share/man/man1/moat.1.gz "${units[@]}"; do
	[ ! -e "$f" ] || die "dpkg -P left $f behind"
done
log "dpkg -i: moat version and man moat work from the package; dpkg -P removes every file"
log "PASS in $((SECONDS - start))s"
