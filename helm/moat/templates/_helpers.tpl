{{/*
Helpers. Every helper takes a context dict:
  root:   the top-level context ($) of the chart that renders
  values: moat's values (.Values here; .Values.moat in a parent chart)
so that they work both in this chart and from a parent chart that has moat as
a dependency (where $.Chart is the parent's Chart).
*/}}

{{/* The "moat" name; parent charts do not rename it. */}}
{{- define "moat.name" -}}
{{- default "moat" .values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-moat, or fullnameOverride. */}}
{{- define "moat.fullname" -}}
{{- if .values.fullnameOverride -}}
{{- .values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "moat.name" . -}}
{{- if contains $name .root.Release.Name -}}
{{- .root.Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .root.Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "moat.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "moat.fullname" .)) .values.tls.secretName -}}
{{- end -}}

{{- define "moat.selectorLabels" -}}
app.kubernetes.io/name: {{ include "moat.name" . }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "moat.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "moat.selectorLabels" . }}
app.kubernetes.io/version: {{ .values.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{/*
moat.image: repository:tag, or repository@digest. image.registry replaces
the registry part of the repository (a mirror): with registry
"mirror.example:5000", ghcr.io/moat-proxy/moat becomes
mirror.example:5000/moat-proxy/moat.
*/}}
{{- define "moat.image" -}}
{{- $repo := .values.image.repository -}}
{{- if .values.image.registry -}}
{{- $parts := splitList "/" $repo -}}
{{- if and (gt (len $parts) 1) (regexMatch "[.:]|^localhost$" (first $parts)) -}}
{{- $repo = join "/" (rest $parts) -}}
{{- end -}}
{{- $repo = printf "%s/%s" (trimSuffix "/" .values.image.registry) $repo -}}
{{- end -}}
{{- if .values.image.digest -}}
{{- printf "%s@%s" $repo .values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo .values.image.tag -}}
{{- end -}}
{{- end -}}

{{/*
moat.podAnnotations: Prometheus scrape annotations for the pod template's
metadata.annotations (empty when metrics.podAnnotations is false).
*/}}
{{- define "moat.podAnnotations" -}}
{{- if .values.metrics.podAnnotations -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .values.status.port | quote }}
prometheus.io/path: /metrics
{{- end -}}
{{- end -}}

{{/* Seconds moat needs to stop: --shutdown-delay + --shutdown-timeout. */}}
{{- define "moat.shutdownSeconds" -}}
{{- add (int .values.shutdown.delaySeconds) (int .values.shutdown.timeoutSeconds) -}}
{{- end -}}
