{{/*
Pod-level pieces of moat.sidecar: the port check, the socket directory of a
unix: target, and what moat adds to the app's containers. Each takes the
context dict (root, values) of _helpers.tpl, plus "spec" (the pod spec)
where it reads or changes the pod.
*/}}

{{/* moat.socketDir: the directory of a unix:/path target's socket, or "". */}}
{{- define "moat.socketDir" -}}
{{- $t := toString .values.target -}}
{{- if hasPrefix "unix:/" $t -}}
{{- dir (trimPrefix "unix:" $t) -}}
{{- end -}}
{{- end -}}

{{/*
moat.checkPorts fails the render when moat's two ports collide with each
other or with a port a container of the pod declares: the second bind
fails, and the pod restarts for ever.
*/}}
{{- define "moat.checkPorts" -}}
{{- $v := .values -}}
{{- $listen := int64 $v.listen.port -}}
{{- $status := int64 $v.status.port -}}
{{- if eq $listen $status -}}
{{- fail (printf "moat: listen.port and status.port are both %d; give the status port a port of its own" $listen) -}}
{{- end -}}
{{- range $c := concat (.spec.initContainers | default list) (.spec.containers | default list) -}}
{{- range $p := ($c.ports | default list) -}}
{{- $port := int64 $p.containerPort -}}
{{- if eq $port $listen -}}
{{- fail (printf "moat: listen.port %d is also a port of container %q; moat and the app cannot both bind it" $port $c.name) -}}
{{- end -}}
{{- if eq $port $status -}}
{{- fail (printf "moat: status.port %d is also a port of container %q; moat and the app cannot both bind it" $port $c.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
moat.appContainers returns the pod spec (as YAML) with, in the containers
named by socketVolume.containers, the socket volume mounted at the socket's
directory, and in those named by appPreStop.containers a preStop sleep.
Naming a container that the pod spec does not have fails the render.
*/}}
{{- define "moat.appContainers" -}}
{{- $v := .values -}}
{{- $spec := .spec -}}
{{- $socketDir := include "moat.socketDir" . -}}
{{- $names := list -}}
{{- range $c := ($spec.containers | default list) -}}
{{- $names = append $names $c.name -}}
{{- end -}}
{{- range $want := concat $v.socketVolume.containers $v.appPreStop.containers -}}
{{- if not (has $want $names) -}}
{{- fail (printf "moat: socketVolume.containers or appPreStop.containers names %q, which is not a container of the pod spec" $want) -}}
{{- end -}}
{{- end -}}
{{- if and $v.socketVolume.containers (not $socketDir) -}}
{{- fail "moat: socketVolume.containers is set, but target is not a unix:/path socket" -}}
{{- end -}}
{{- $sleep := int $v.appPreStop.sleepSeconds -}}
{{- if and $v.appPreStop.containers (lt $sleep 1) -}}
{{- fail "moat: appPreStop.containers is set, but appPreStop.sleepSeconds is not; give the seconds to sleep" -}}
{{- end -}}
{{- if and $v.appPreStop.containers (semverCompare "<1.30.0-0" .root.Capabilities.KubeVersion.Version) -}}
{{- fail (printf "moat: appPreStop uses lifecycle.preStop.sleep, which needs Kubernetes 1.30 or later (this is %s)" .root.Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- range $c := ($spec.containers | default list) -}}
{{- if has $c.name $v.socketVolume.containers -}}
{{- $mount := dict "name" $v.socketVolume.name "mountPath" $socketDir -}}
{{- $_ := set $c "volumeMounts" (append ($c.volumeMounts | default list) $mount) -}}
{{- end -}}
{{- if has $c.name $v.appPreStop.containers -}}
{{- $lifecycle := $c.lifecycle | default dict -}}
{{- if hasKey $lifecycle "preStop" -}}
{{- fail (printf "moat: container %q already has a preStop hook; leave it out of appPreStop.containers" $c.name) -}}
{{- end -}}
{{- $_ := set $lifecycle "preStop" (dict "sleep" (dict "seconds" $sleep)) -}}
{{- $_ := set $c "lifecycle" $lifecycle -}}
{{- end -}}
{{- end -}}
{{- toYaml $spec -}}
{{- end -}}

{{/*
moat.preStopSleep: a container's lifecycle block that sleeps before the
container gets SIGTERM, for library users who write the app's container
themselves:

    lifecycle:
      {{- include "moat.preStopSleep" (dict "seconds" 5) | nindent 6 }}

No shell is needed (lifecycle.preStop.sleep, Kubernetes 1.30+).
*/}}
{{- define "moat.preStopSleep" -}}
preStop:
  sleep:
    seconds: {{ int .seconds }}
{{- end -}}

{{/* moat.preStopSeconds: the longest preStop sleep of the pod's containers. */}}
{{- define "moat.preStopSeconds" -}}
{{- $most := 0 -}}
{{- range $c := (.spec.containers | default list) -}}
{{- $s := int (((($c.lifecycle | default dict).preStop | default dict).sleep | default dict).seconds | default 0) -}}
{{- if gt $s $most -}}{{- $most = $s -}}{{- end -}}
{{- end -}}
{{- $most -}}
{{- end -}}
