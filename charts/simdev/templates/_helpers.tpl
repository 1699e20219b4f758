{{/*
Helm's usual labels, on every object besides those of manifests/base and its kustomization
(the chart tests ignore these when they compare the chart with the base).
*/}}
{{- define "simdev.labels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* An image reference from {repository, tag}; an empty tag is the chart's appVersion. */}}
{{- define "simdev.image" -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .chart.AppVersion) -}}
{{- end }}
