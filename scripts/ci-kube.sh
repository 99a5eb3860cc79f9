#!/usr/bin/env bash
# ci-kube.sh: the Helm chart on a real Kubernetes API server.
#
#   1. kube-apiserver and kubectl from scripts/kube-apiserver-build.sh (built
#      once from the Go module proxy, cached; seconds on later runs), etcd
#      from Debian's etcd-server, both on 127.0.0.1 with ports picked free,
#      authentication by a static token file.
#   2. For every value set in helm/test/testdata/values (standalone chart;
#      library-*.yaml go to the parent chart) and the parent chart's
#      defaults, in a namespace of its own labelled
#      pod-security.kubernetes.io/enforce=restricted:
#        - `kubectl apply --dry-run=server --validate=strict` of everything
#          `helm template` renders (helm test pods included): unknown or
#          duplicate fields are errors, and the PodSecurity admission plugin
#          enforces "restricted" on the Pods;
#        - a real `helm install` (no warnings allowed: the API server warns
#          about pod templates that would violate the namespace's level);
#        - a Pod made from each installed Deployment's pod template, created
#          with --dry-run=server: PodSecurity admission enforces "restricted"
#          on it (no controller runs here to create real pods).
#   3. A control: a privileged pod is refused in such a namespace, so the
#      checks above are not vacuous.
#
# cert-manager's Certificate CRD comes from the cert-manager module helm/test
# already requires. prometheus-operator's CRDs (ServiceMonitor, PodMonitor,
# PrometheusRule) are not in a Go module here: they are installed as
# stand-ins that accept any spec, so the API server checks only their kind
# and metadata; their fields are checked by strict decoding into
# prometheus-operator's Go types in helm/test.
#
# A machine that cannot build kube-apiserver skips this script with a loud
# line (and exit 0); every other failure fails CI.
#
# Environment: KUBE_VERSION (see kube-apiserver-build.sh), HELM (default: the
# helm scripts/ci-helm.sh installs).
set -euo pipefail

start=$SECONDS
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export GOTOOLCHAIN=auto
log() { printf '[ci-kube %4ds] %s\n' "$((SECONDS - start))" "$*" >&2; }
die() { printf '[ci-kube] FAIL: %s\n' "$*" >&2; exit 1; }

if ! kube=$(bash scripts/kube-apiserver-build.sh); then
	printf '\n[ci-kube] ******************************************************************\n' >&2
	printf '[ci-kube] SKIPPED: kube-apiserver could not be built on this machine (above).\n' >&2
	printf '[ci-kube] The chart was NOT checked against a real API server in this run.\n' >&2
	printf '[ci-kube] ******************************************************************\n\n' >&2
	exit 0
fi
kubectl="$kube/kubectl"
log "kube-apiserver $("$kube/kube-apiserver" --version) from $kube"

if ! command -v etcd >/dev/null || ! command -v jq >/dev/null; then
	log "installing etcd-server and jq"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends etcd-server jq >/dev/null
fi

HELM_VERSION=${HELM_VERSION:-v3.22.0}
HELM=${HELM:-$HOME/go/bin/helm-$HELM_VERSION/helm}
if [ ! -x "$HELM" ]; then
	log "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
	mkdir -p "$(dirname "$HELM")"
	(cd "$(dirname "$HELM")" && GOBIN="$(dirname "$HELM")" GOFLAGS= go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
fi

work=$(mktemp -d /tmp/moat-ci-kube.XXXXXX)
pids=()
cleanup() { # the API server first (it drains against etcd), then etcd; KILL after 10 s
	local p i
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		p=${pids[i]}
		kill "$p" 2>/dev/null || continue
		for _ in $(seq 1 20); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
		kill -9 "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

# A port nothing listens on now, from a range the kernel does not hand out
# for outgoing connections (ip_local_port_range starts at 32768).
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 12000))
		(echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}

# --- 1. etcd and kube-apiserver ---------------------------------------------------
etcd_client=$(free_port)
etcd_peer=$(free_port)
etcd --name ci --data-dir "$work/etcd" \
	--listen-client-urls "http://127.0.0.1:$etcd_client" --advertise-client-urls "http://127.0.0.1:$etcd_client" \
	--listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
	--initial-cluster "ci=http://127.0.0.1:$etcd_peer" >"$work/etcd.log" 2>&1 &
pids+=($!)

token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s,ci-admin,ci-admin,system:masters\n' "$token" >"$work/tokens.csv"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/sa.key" 2>/dev/null
openssl pkey -in "$work/sa.key" -pubout -out "$work/sa.pub"
port=$(free_port)
"$kube/kube-apiserver" \
	--etcd-servers "http://127.0.0.1:$etcd_client" \
	--bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$port" \
	--cert-dir "$work/certs" \
	--token-auth-file "$work/tokens.csv" --authorization-mode RBAC \
	--service-account-issuer https://kubernetes.default.svc.cluster.local \
	--service-account-key-file "$work/sa.pub" --service-account-signing-key-file "$work/sa.key" \
	--service-cluster-ip-range 10.96.0.0/16 \
	--endpoint-reconciler-type none \
	>"$work/apiserver.log" 2>&1 &
apiserver=$!
pids+=("$apiserver")

export KUBECONFIG="$work/kubeconfig"
"$kubectl" config set-cluster ci --server "https://127.0.0.1:$port" --insecure-skip-tls-verify=true >/dev/null
"$kubectl" config set-credentials ci --token "$token" >/dev/null
"$kubectl" config set-context ci --cluster ci --user ci >/dev/null
"$kubectl" config use-context ci >/dev/null
chmod 600 "$KUBECONFIG"
log "waiting for kube-apiserver on 127.0.0.1:$port (etcd on $etcd_client)"
for i in $(seq 1 180); do
	if "$kubectl" get --raw /readyz >/dev/null 2>&1; then break; fi
	if ! kill -0 "$apiserver" 2>/dev/null; then tail -30 "$work/apiserver.log" >&2; die "kube-apiserver exited"; fi
	[ "$i" -lt 180 ] || { tail -30 "$work/apiserver.log" >&2; die "kube-apiserver not ready after 180 s"; }
	sleep 1
done
for i in $(seq 1 60); do # the built-in namespaces appear shortly after readiness
	"$kubectl" get namespace default >/dev/null 2>&1 && break
	sleep 1
done
server_version=$("$kubectl" version -o json | jq -r .serverVersion.gitVersion)
log "API server ready: $server_version (helm sees $("$HELM" version --short))"

# --- CRDs -----------------------------------------------------------------------
cm_dir=$(cd helm/test && go list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager)
"$kubectl" apply -f "$cm_dir/deploy/crds/cert-manager.io_certificates.yaml" >/dev/null
for kind in ServiceMonitor:servicemonitors PodMonitor:podmonitors PrometheusRule:prometheusrules; do
	cat <<EOF | "$kubectl" apply -f - >/dev/null
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: ${kind#*:}.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names:
    kind: ${kind%%:*}
    plural: ${kind#*:}
    singular: $(tr '[:upper:]' '[:lower:]' <<<"${kind%%:*}")
    listKind: ${kind%%:*}List
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              x-kubernetes-preserve-unknown-fields: true
EOF
done
"$kubectl" wait --for condition=Established --timeout 60s crd --all >/dev/null
log "CRDs: cert-manager Certificate (real), monitoring.coreos.com stand-ins"

# --- 2. Value sets ----------------------------------------------------------------
parent="$work/parent"
cp -r helm/test/testdata/parent "$parent"
mkdir -p "$parent/charts"
cp -r helm/moat "$parent/charts/moat"

restricted_ns() { # name
	"$kubectl" create namespace "$1" >/dev/null
	"$kubectl" label namespace "$1" pod-security.kubernetes.io/enforce=restricted \
		pod-security.kubernetes.io/enforce-version=latest >/dev/null
	# No controller-manager: create the default ServiceAccount it would.
	"$kubectl" -n "$1" create serviceaccount default >/dev/null
}

# Value sets that cannot pass "restricted" by the user's choice, installed in
# a namespace without Pod Security enforcement; helm/test's
# restrictedExceptions asserts the one violation each has.
# workload-api-hostpath: the SPIRE agent's socket directory as a hostPath.
unrestricted_sets=" workload-api-hostpath "

plain_ns() { # name
	"$kubectl" create namespace "$1" >/dev/null
	"$kubectl" -n "$1" create serviceaccount default >/dev/null
}

sets=("standalone:defaults:")
for f in helm/test/testdata/values/*.yaml; do
	name=$(basename "$f" .yaml)
	case "$name" in
	library-*) sets+=("parent:$name:$f") ;;
	*) sets+=("standalone:$name:$f") ;;
	esac
done
sets+=("parent:library-defaults:")

checked_pods=0
for s in "${sets[@]}"; do
	IFS=: read -r chart name file <<<"$s"
	ns="vs-$name"
	chart_dir=helm/moat
	[ "$chart" = parent ] && chart_dir=$parent
	args=()
	[ -n "$file" ] && args=(-f "$file")
	level=restricted
	if [[ "$unrestricted_sets" == *" $name "* ]]; then
		level=privileged
		plain_ns "$ns"
	else
		restricted_ns "$ns"
	fi

	"$HELM" template rel "$chart_dir" -n "$ns" --kube-version "${server_version#v}" "${args[@]}" >"$work/$name.yaml"
	if ! "$kubectl" apply -n "$ns" --dry-run=server --validate=strict -f "$work/$name.yaml" >"$work/apply.out" 2>&1 ||
		grep -i "warning" "$work/apply.out" >&2; then
		cat "$work/apply.out" >&2
		die "$name: kubectl apply --dry-run=server --validate=strict refused the rendered manifests"
	fi

	if ! "$HELM" install rel "$chart_dir" -n "$ns" "${args[@]}" >"$work/install.out" 2>&1; then
		cat "$work/install.out" >&2
		die "$name: helm install failed"
	fi
	if grep -i "warning" "$work/install.out" >&2; then
		die "$name: the API server warned during helm install (above)"
	fi

	deployments=$("$kubectl" -n "$ns" get deployments -o json)
	n=$(jq '.items | length' <<<"$deployments")
	[ "$n" -gt 0 ] || die "$name: helm install created no Deployment"
	for i in $(seq 0 $((n - 1))); do
		jq ".items[$i] | {apiVersion: \"v1\", kind: \"Pod\",
			metadata: {name: (.metadata.name + \"-pod\"), namespace: .metadata.namespace, labels: .spec.template.metadata.labels},
			spec: .spec.template.spec}" <<<"$deployments" >"$work/pod.json"
		if ! "$kubectl" create --dry-run=server -f "$work/pod.json" >"$work/pod.out" 2>&1 || grep -i "warning" "$work/pod.out" >&2; then
			cat "$work/pod.out" >&2
			die "$name: a Pod from the Deployment's template is refused under Pod Security $level"
		fi
		checked_pods=$((checked_pods + 1))
	done
	log "$name ($chart): helm install, strict server-side apply, $n pod template(s) admitted under $level"
done

# --- 3. Control ------------------------------------------------------------------
# A pod with no securityContext: fine under "baseline", not "restricted".
printf 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: unhardened\nspec:\n  containers:\n    - name: c\n      image: example.invalid/x:1\n' >"$work/unhardened.yaml"
if out=$("$kubectl" -n vs-defaults create --dry-run=server -f "$work/unhardened.yaml" 2>&1); then
	die "a pod without a securityContext was admitted in a restricted namespace: the Pod Security checks above prove nothing"
fi
grep -q 'violates PodSecurity "restricted' <<<"$out" || die "the unhardened pod was refused, but not by PodSecurity: $out"
log "control: a pod without a securityContext is refused by PodSecurity restricted"
log "PASS: ${#sets[@]} value sets, $checked_pods pod templates, on $server_version, in $((SECONDS - start))s"
