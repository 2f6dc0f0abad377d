{{/* The admission webhook (webhook.enabled): names and labels. Its pods
are not selected by the chart's Service, PodMonitor or PDB (another
app.kubernetes.io/name). */}}
{{- define "lifeguard.webhook.fullname" -}}
{{- printf "%s-webhook" (include "lifeguard.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lifeguard.webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-webhook" (include "lifeguard.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: admission-webhook
{{- end -}}

{{- define "lifeguard.webhook.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "lifeguard.webhook.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The Secret holding the serving certificate (tls.crt, tls.key, ca.crt). */}}
{{- define "lifeguard.webhook.tlsSecret" -}}
{{- printf "%s-tls" (include "lifeguard.webhook.fullname" .) -}}
{{- end -}}

{{- define "lifeguard.webhook.certDir" -}}/etc/lifeguard-webhook{{- end -}}

{{/* What both webhook entries share; called with a dict (path, ns, name,
caBundle, timeout). */}}
{{- define "lifeguard.webhook.entry" -}}
admissionReviewVersions: ["v1"]
sideEffects: None
failurePolicy: Ignore
matchPolicy: Equivalent
reinvocationPolicy: Never
timeoutSeconds: {{ .timeout }}
clientConfig:
  service:
    name: {{ .name }}
    namespace: {{ .ns }}
    path: {{ .path }}
    port: 443
  {{- if .caBundle }}
  caBundle: {{ .caBundle }}
  {{- end }}
rules:
  - operations: ["CREATE"]
    apiGroups: [""]
    apiVersions: ["v1"]
    resources: ["pods"]
    scope: Namespaced
{{- end -}}
