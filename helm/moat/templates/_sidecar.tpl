{{/*
=============================================================================
moat.sidecar: add moat to a pod spec.

  spec:
    {{- include "moat.sidecar" (dict "root" $ "values" .Values.moat "podSpec" $podSpec) | nindent 4 }}

podSpec is your pod spec as a dict (e.g. fromYaml of your own template). The
result is that pod spec, as YAML, with:
  - the moat container: an init container with restartPolicy: Always (native
    sidecar, values.nativeSidecar) appended to initContainers, or a plain
    container appended to containers;
  - its volume for the TLS Secret or for the SPIFFE Workload API socket
    (values.workloadAPI), and the client CA Secret, the CRLs, the socket
    directory of a unix: target and extraVolumes, appended to volumes;
  - the socket volume mounted into the containers named in
    socketVolume.containers, and a preStop sleep (appPreStop) on the
    containers named in appPreStop.containers;
  - imagePullSecrets appended;
  - terminationGracePeriodSeconds consistent with --shutdown-delay,
    --shutdown-timeout and the app's preStop sleep.
It fails the render when listen.port, status.port and the ports your
containers declare collide.
"values" defaults to .Values.moat of root, then to root's .Values.
=============================================================================
*/}}
{{- define "moat.sidecar" -}}
{{- $ctx := dict "root" .root "values" (.values | default (.root.Values.moat | default .root.Values)) -}}
{{- $v := $ctx.values -}}
{{- $spec := deepCopy (.podSpec | default dict) -}}
{{- if and $v.nativeSidecar (semverCompare "<1.29.0-0" .root.Capabilities.KubeVersion.Version) -}}
{{- fail (printf "moat: nativeSidecar needs Kubernetes 1.29 or later (this is %s); set nativeSidecar=false to run moat as a plain container" .root.Capabilities.KubeVersion.Version) -}}
{{- end -}}

{{- $container := include "moat.container" $ctx | fromYaml -}}
{{- if hasKey $container "Error" -}}
{{- fail (printf "moat: internal error rendering the container: %s" $container.Error) -}}
{{- end -}}
{{- range $c := concat ($spec.initContainers | default list) ($spec.containers | default list) -}}
{{- if eq $c.name $container.name -}}
{{- fail (printf "moat: the pod spec already has a container named %q" $c.name) -}}
{{- end -}}
{{- end -}}
{{- include "moat.checkPorts" (dict "values" $v "spec" $spec) -}}
{{- $spec = include "moat.appContainers" (dict "root" .root "values" $v "spec" $spec) | fromYaml -}}
{{- if $v.nativeSidecar -}}
{{- $_ := set $container "restartPolicy" "Always" -}}
{{- $_ := set $spec "initContainers" (append ($spec.initContainers | default list) $container) -}}
{{- else -}}
{{- $_ := set $spec "containers" (append ($spec.containers | default list) $container) -}}
{{- end -}}

{{- $volumes := list -}}
{{- range $vol := include "moat.volumes" $ctx | fromYamlArray -}}
{{- $dup := false -}}
{{- range $have := ($spec.volumes | default list) -}}
{{- if eq $have.name $vol.name -}}
{{- $dup = true -}}
{{- end -}}
{{- end -}}
{{- if and $dup (ne $vol.name $v.socketVolume.name) -}}
{{- fail (printf "moat: the pod spec already has a volume named %q" $vol.name) -}}
{{- else if not $dup -}}{{/* the pod's own socket volume is used as it is */}}
{{- $volumes = append $volumes $vol -}}
{{- end -}}
{{- end -}}
{{- if $volumes -}}
{{- $_ := set $spec "volumes" (concat ($spec.volumes | default list) $volumes) -}}
{{- end -}}

{{- $need := include "moat.shutdownSeconds" $ctx | int -}}
{{- $grace := 0 -}}
{{- $from := "" -}}
{{- if not (kindIs "invalid" $v.terminationGracePeriodSeconds) -}}
{{- $grace = int $v.terminationGracePeriodSeconds -}}
{{- $from = "terminationGracePeriodSeconds" -}}
{{- else if hasKey $spec "terminationGracePeriodSeconds" -}}
{{- $grace = int $spec.terminationGracePeriodSeconds -}}
{{- $from = "the pod spec's terminationGracePeriodSeconds" -}}
{{- else -}}
{{- $grace = add $need (int $v.appShutdownSeconds) (include "moat.preStopSeconds" (dict "spec" $spec) | int) -}}
{{- end -}}
{{- if lt $grace (add $need 1 | int) -}}
{{- fail (printf "moat: %s is %d, but moat needs more than shutdown.delaySeconds + shutdown.timeoutSeconds = %d seconds to stop" $from $grace $need) -}}
{{- end -}}
{{- $_ := set $spec "terminationGracePeriodSeconds" $grace -}}
{{- $pullSecrets := $spec.imagePullSecrets | default list -}}
{{- range $s := $v.imagePullSecrets -}}
{{- $name := kindIs "string" $s | ternary $s (get (kindIs "map" $s | ternary $s dict) "name") -}}
{{- $have := false -}}
{{- range $pullSecrets -}}{{- if eq .name $name -}}{{- $have = true -}}{{- end -}}{{- end -}}
{{- if not $have -}}{{- $pullSecrets = append $pullSecrets (dict "name" $name) -}}{{- end -}}
{{- end -}}
{{- if $pullSecrets -}}
{{- $_ := set $spec "imagePullSecrets" $pullSecrets -}}
{{- end -}}
{{- toYaml $spec -}}
{{- end -}}

{{/*
moat.args: the `moat server` command line. scripts/ci-helm.sh checks that the
real binary knows every flag rendered here.
*/}}
{{- define "moat.args" -}}
{{- $v := .values -}}
- server
- --listen=:{{ int64 $v.listen.port }}
- --target={{ $v.target }}
{{- if $v.unsafeTarget }}
- --unsafe-target
{{- else if not (regexMatch "^(unix:/.+|(?i:localhost)\\.?:[0-9]+|127\\.[0-9]+\\.[0-9]+\\.[0-9]+:[0-9]+|\\[::1\\]:[0-9]+)$" (toString $v.target)) }}
{{- fail (printf "moat: target %s is not a loopback address, localhost or a unix socket, so the plaintext would leave the pod; set unsafeTarget=true to allow it" $v.target) }}
{{- end }}
{{- if $v.workloadAPI.enabled }}
- --use-workload-api-addr=unix://{{ $v.workloadAPI.mountPath }}/{{ $v.workloadAPI.socketName }}
- --use-workload-api-timeout={{ $v.workloadAPI.timeout }}
{{- else if $v.tls.selfSigned }}
- --self-signed
{{- else }}
- --cert-dir={{ $v.tls.mountPath }}
{{- end }}
{{- if $v.mtls.enabled }}
{{- if and $v.mtls.clientCA.secretName (not $v.workloadAPI.enabled) }}
- --cacert={{ printf "%s/%s" $v.mtls.clientCA.mountPath $v.mtls.clientCA.key }}
{{- end }}
{{- range $v.mtls.allowCN }}
- --allow-cn={{ . }}
{{- end }}
{{- range $v.mtls.allowOU }}
- --allow-ou={{ . }}
{{- end }}
{{- range $v.mtls.allowDNS }}
- --allow-dns={{ . }}
{{- end }}
{{- range $v.mtls.allowURI }}
- --allow-uri={{ . }}
{{- end }}
{{- if $v.mtls.allowAll }}
- --allow-all
{{- end }}
{{- if or $v.mtls.crl.configMap $v.mtls.crl.secretName }}
{{- range $v.mtls.crl.keys }}
- --crl={{ printf "%s/%s" $v.mtls.crl.mountPath . }}
{{- end }}
{{- if eq $v.mtls.crl.expired "refuse" }}
- --crl-expired=refuse
{{- end }}
{{- end }}
{{- else }}
- --disable-authentication
{{- end }}
- --status=:{{ int64 $v.status.port }}
- --handshake-timeout={{ $v.timeouts.handshake }}
- --idle-timeout={{ $v.timeouts.idle }}
- --connect-timeout={{ $v.timeouts.connect }}
- --shutdown-delay={{ int64 $v.shutdown.delaySeconds }}s
- --shutdown-timeout={{ int64 $v.shutdown.timeoutSeconds }}s
{{- if $v.maxConcurrentConns }}
- --max-concurrent-conns={{ int64 $v.maxConcurrentConns }}
{{- end }}
{{- if not (kindIs "invalid" $v.maxConcurrentHandshakes) }}
- --max-concurrent-handshakes={{ int64 $v.maxConcurrentHandshakes }}
{{- end }}
{{- if $v.maxHandshakeRate }}
- --max-handshake-rate={{ int64 $v.maxHandshakeRate }}
{{- end }}
{{- if $v.proxyProtocol }}
- --proxy-protocol={{ $v.proxyProtocol }}
{{- end }}
{{- if $v.acceptProxyProtocol }}
- --accept-proxy-protocol={{ join "," $v.acceptProxyProtocol }}
{{- end }}
{{- if $v.disableLandlock }}
- --disable-landlock
{{- end }}
{{- if $v.alpn }}
- --alpn={{ join "," $v.alpn }}
{{- end }}
{{- if $v.enablePprof }}
- --enable-pprof
{{- end }}
{{- with $v.crypto }}
{{- if .minTLSVersion }}
- --min-tls-version={{ .minTLSVersion }}
{{- end }}
{{- if .groups }}
- --tls-groups={{ join "," .groups }}
{{- end }}
{{- if .requirePQ }}
- --require-pq
{{- end }}
{{- end }}
{{- if $v.maxConnLifetime }}
- --max-conn-lifetime={{ $v.maxConnLifetime }}
{{- end }}
{{- if $v.timedReload }}
- --timed-reload={{ $v.timedReload }}
{{- end }}
- --log-format={{ $v.log.format }}
- --log-level={{ $v.log.level }}
{{- range $v.extraArgs }}
- {{ . }}
{{- end }}
{{- end -}}

{{/* moat.container: the moat container (without restartPolicy). */}}
{{- define "moat.container" -}}
{{- $v := .values -}}
{{- if and $v.mtls.enabled (not (or $v.mtls.allowCN $v.mtls.allowOU $v.mtls.allowDNS $v.mtls.allowURI $v.mtls.allowAll)) -}}
{{- fail "moat: mtls.enabled needs at least one of mtls.allowCN, allowOU, allowDNS, allowURI, or mtls.allowAll" -}}
{{- end -}}
{{- if and $v.mtls.enabled $v.mtls.allowAll (or $v.mtls.allowCN $v.mtls.allowOU $v.mtls.allowDNS $v.mtls.allowURI) -}}
{{- fail "moat: mtls.allowAll admits every client of the CA; it cannot be combined with mtls.allowCN, allowOU, allowDNS or allowURI" -}}
{{- end -}}
{{- if and $v.mtls.crl.configMap $v.mtls.crl.secretName -}}
{{- fail "moat: mtls.crl takes a configMap or a secretName, not both" -}}
{{- end -}}
{{- if and (or $v.mtls.crl.configMap $v.mtls.crl.secretName) (not $v.mtls.enabled) -}}
{{- fail "moat: mtls.crl needs mtls.enabled: without client certificates there is nothing to revoke" -}}
{{- end -}}
{{- if and $v.mtls.enabled $v.tls.selfSigned (not $v.mtls.clientCA.secretName) (not $v.workloadAPI.enabled) -}}
{{- fail "moat: mtls.enabled with tls.selfSigned needs mtls.clientCA.secretName (there is no ca.crt to verify clients with)" -}}
{{- end -}}
{{- if and $v.workloadAPI.enabled (or $v.tls.selfSigned $v.certManager.enabled $v.mtls.clientCA.secretName) -}}
{{- fail "moat: workloadAPI.enabled takes the certificate and trust bundle from the SPIFFE Workload API; it cannot be combined with tls.selfSigned, certManager.enabled or mtls.clientCA.secretName" -}}
{{- end -}}
name: moat
image: {{ include "moat.image" . | quote }}
imagePullPolicy: {{ $v.image.pullPolicy }}
# A fatal start-up error is moat's last log line: show it in the pod status.
terminationMessagePolicy: FallbackToLogsOnError
args:
{{- include "moat.args" . | nindent 2 }}
ports:
  - name: moat-tls
    containerPort: {{ $v.listen.port }}
    protocol: TCP
  - name: moat-status
    containerPort: {{ $v.status.port }}
    protocol: TCP
{{- if or $v.extraEnv ($v.resources.limits | default dict).memory }}
env:
{{- if ($v.resources.limits | default dict).memory }}
  # Keep the Go heap under the container's memory limit.
  - name: GOMEMLIMIT
    valueFrom:
      resourceFieldRef:
        resource: limits.memory
{{- end }}
{{- with $v.extraEnv }}
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
startupProbe:
  httpGet:
    path: /healthz
    port: {{ $v.status.port }}
  {{- toYaml $v.probes.startup | nindent 2 }}
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ $v.status.port }}
  {{- toYaml $v.probes.liveness | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ $v.status.port }}
  {{- toYaml $v.probes.readiness | nindent 2 }}
resources:
  {{- toYaml $v.resources | nindent 2 }}
securityContext:
  {{- toYaml $v.securityContext | nindent 2 }}
{{- $socketDir := include "moat.socketDir" . -}}
{{- $tlsSecret := and (not $v.workloadAPI.enabled) (not $v.tls.selfSigned) -}}
{{- if or $v.workloadAPI.enabled $tlsSecret (and $v.mtls.enabled $v.mtls.clientCA.secretName) (and $v.mtls.enabled (or $v.mtls.crl.configMap $v.mtls.crl.secretName)) $socketDir $v.extraVolumeMounts }}
volumeMounts:
{{- if $v.workloadAPI.enabled }}
  - name: moat-workload-api
    mountPath: {{ $v.workloadAPI.mountPath }}
    readOnly: true
{{- end }}
{{- if $tlsSecret }}
  # The whole Secret, not subPath: rotated files reach moat without a restart.
  - name: moat-tls
    mountPath: {{ $v.tls.mountPath }}
    readOnly: true
{{- end }}
{{- if and $v.mtls.enabled $v.mtls.clientCA.secretName }}
  - name: moat-client-ca
    mountPath: {{ $v.mtls.clientCA.mountPath }}
    readOnly: true
{{- end }}
{{- if and $v.mtls.enabled (or $v.mtls.crl.configMap $v.mtls.crl.secretName) }}
  # The whole volume, not subPath: an updated CRL reaches moat without a restart.
  - name: moat-crl
    mountPath: {{ $v.mtls.crl.mountPath }}
    readOnly: true
{{- end }}
{{- if $socketDir }}
  # The directory of the unix: target's socket, shared with the app.
  - name: {{ $v.socketVolume.name }}
    mountPath: {{ $socketDir }}
{{- end }}
{{- with $v.extraVolumeMounts }}
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- end -}}

{{/* moat.volumes: the volumes moat mounts, as a YAML list (may be empty). */}}
{{- define "moat.volumes" -}}
{{- $v := .values -}}
{{- if $v.workloadAPI.enabled }}
- name: moat-workload-api
{{- if eq $v.workloadAPI.volume "hostPath" }}
  hostPath:
    path: {{ $v.workloadAPI.hostPath }}
    type: Directory
{{- else }}
  csi:
    driver: csi.spiffe.io
    readOnly: true
{{- end }}
{{- else if not $v.tls.selfSigned }}
- name: moat-tls
  secret:
    secretName: {{ include "moat.tlsSecretName" . }}
    defaultMode: 0444
{{- end }}
{{- if and $v.mtls.enabled $v.mtls.clientCA.secretName (not $v.workloadAPI.enabled) }}
- name: moat-client-ca
  secret:
    secretName: {{ $v.mtls.clientCA.secretName }}
    defaultMode: 0444
    items:
      - key: {{ $v.mtls.clientCA.key }}
        path: {{ $v.mtls.clientCA.key }}
{{- end }}
{{- if and $v.mtls.enabled $v.mtls.crl.configMap }}
- name: moat-crl
  configMap:
    name: {{ $v.mtls.crl.configMap }}
    defaultMode: 0444
{{- else if and $v.mtls.enabled $v.mtls.crl.secretName }}
- name: moat-crl
  secret:
    secretName: {{ $v.mtls.crl.secretName }}
    defaultMode: 0444
{{- end }}
{{- if include "moat.socketDir" . }}
- name: {{ $v.socketVolume.name }}
  {{- if $v.socketVolume.source }}
  {{- toYaml $v.socketVolume.source | nindent 2 }}
  {{- else }}
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
  {{- end }}
{{- end }}
{{- with $v.extraVolumes }}
{{- toYaml . | nindent 0 }}
{{- end }}
{{- end -}}
