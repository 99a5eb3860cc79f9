{{/*
Resources for the pods moat runs in, as named templates so that a parent
chart can render them for its own pods. Each takes the context dict (root,
values) plus "podSelector": the labels of the pods (a dict).

  {{ include "moat.networkPolicy" (dict "root" $ "values" .Values.moat "podSelector" (dict "app" "shop")) }}
  {{ include "moat.podMonitor" (dict "root" $ "values" .Values.moat "podSelector" (dict "app" "shop")) }}
  {{ include "moat.prometheusRule" (dict "root" $ "values" .Values.moat) }}

The standalone install renders them from networkPolicy.enabled,
metrics.podMonitor.enabled and metrics.prometheusRule.enabled; set
networkPolicy.podSelector / metrics.podMonitor.podSelector to have the moat
subchart render them for a parent chart's pods.
*/}}

{{/* moat.podSelectorFor: the given selector, else the standalone pods' labels. */}}
{{- define "moat.podSelectorFor" -}}
{{- if .podSelector -}}
{{- toYaml .podSelector -}}
{{- else if .values.example.enabled -}}
{{- include "moat.selectorLabels" . -}}
{{- else -}}
{{- fail (printf "moat: %s.podSelector is needed to select your pods when example.enabled is false" .what) -}}
{{- end -}}
{{- end -}}

{{/*
moat.networkPolicy: only moat's TLS port is open to networkPolicy.from
(everyone when empty), and the status port to networkPolicy.statusFrom
(nobody when empty; kubelet probes are not subject to NetworkPolicy). The
app's own ports are closed: the app is reached through moat.
*/}}
{{- define "moat.networkPolicy" -}}
{{- $v := .values -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "moat.fullname" . }}
  labels:
    {{- include "moat.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "moat.podSelectorFor" (dict "root" .root "values" .values "podSelector" .podSelector "what" "networkPolicy") | nindent 6 }}
  policyTypes:
    - Ingress
  ingress:
    - ports:
        - port: {{ int64 $v.listen.port }}
          protocol: TCP
      {{- with $v.networkPolicy.from }}
      from:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    {{- with $v.networkPolicy.statusFrom }}
    - ports:
        - port: {{ int64 $v.status.port }}
          protocol: TCP
      from:
        {{- toYaml . | nindent 8 }}
    {{- end }}
{{- end -}}

{{/* moat.podMonitor: a prometheus-operator PodMonitor for moat's status port. */}}
{{- define "moat.podMonitor" -}}
{{- $m := .values.metrics.podMonitor -}}
apiVersion: monitoring.coreos.com/v1
kind: PodMonitor
metadata:
  name: {{ include "moat.fullname" . }}
  labels:
    {{- include "moat.labels" . | nindent 4 }}
    {{- with $m.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "moat.podSelectorFor" (dict "root" .root "values" .values "podSelector" .podSelector "what" "metrics.podMonitor") | nindent 6 }}
  namespaceSelector:
    matchNames:
      - {{ .root.Release.Namespace }}
  podMetricsEndpoints:
    - port: moat-status
      path: /metrics
      scheme: http
      interval: {{ $m.interval }}
      scrapeTimeout: {{ $m.scrapeTimeout }}
{{- end -}}

{{/*
moat.prometheusRule: alerts on the certificate moat serves, from
moat_certificate_expiry_timestamp_seconds (its NotAfter as a Unix time).
With cert-manager's default renewBefore (15 days), a warning at 7 days means
renewal has been failing for a week.
*/}}
{{- define "moat.prometheusRule" -}}
{{- $r := .values.metrics.prometheusRule -}}
{{- $sel := printf "namespace=%q" .root.Release.Namespace -}}
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: {{ include "moat.fullname" . }}
  labels:
    {{- include "moat.labels" . | nindent 4 }}
    {{- with $r.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  groups:
    - name: moat-certificates
      rules:
        - alert: MoatCertificateExpiresSoon
          expr: (moat_certificate_expiry_timestamp_seconds{ {{- $sel -}} } - time()) < {{ mul (int $r.warningDays) 86400 }}
          for: {{ $r.for }}
          labels:
            severity: warning
          annotations:
            summary: moat's certificate expires in less than {{ int $r.warningDays }} days
            description: 'The certificate moat serves in pod {{ "{{" }} $labels.pod {{ "}}" }} expires in {{ "{{" }} $value | humanizeDuration {{ "}}" }}; renewal is not reaching it.'
        - alert: MoatCertificateExpiryCritical
          expr: (moat_certificate_expiry_timestamp_seconds{ {{- $sel -}} } - time()) < {{ mul (int $r.criticalDays) 86400 }}
          for: {{ $r.for }}
          labels:
            severity: critical
          annotations:
            summary: moat's certificate expires in less than {{ int $r.criticalDays }} days
            description: 'The certificate moat serves in pod {{ "{{" }} $labels.pod {{ "}}" }} expires in {{ "{{" }} $value | humanizeDuration {{ "}}" }}; clients will refuse it when it does.'
{{- end -}}
