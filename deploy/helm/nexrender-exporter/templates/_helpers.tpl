{{- define "nexrender-exporter.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nexrender-exporter.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "nexrender-exporter.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "nexrender-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nexrender-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "nexrender-exporter.labels" -}}
{{ include "nexrender-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "nexrender-exporter.secretName" -}}
{{- .Values.token.existingSecret | default (printf "%s-token" (include "nexrender-exporter.fullname" .)) -}}
{{- end -}}

{{- define "nexrender-exporter.webhookSecretName" -}}
{{- .Values.webhooks.existingSecret | default (printf "%s-webhook" (include "nexrender-exporter.fullname" .)) -}}
{{- end -}}

{{/* The accounts that take webhook deliveries. */}}
{{- define "nexrender-exporter.webhookAccounts" -}}
{{- if .Values.webhooks.existingSecret -}}
{{- toJson .Values.webhooks.accounts -}}
{{- else -}}
{{- toJson (keys .Values.webhooks.secrets | sortAlpha) -}}
{{- end -}}
{{- end -}}

{{/* How the metrics port is spoken to: HTTPS when the web config serves TLS. */}}
{{- define "nexrender-exporter.scheme" -}}
{{- if and .Values.webConfig.existingSecret .Values.webConfig.tls -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}
