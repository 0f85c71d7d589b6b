{{/* Labels on every object of the chart. */}}
{{- define "kaito.labels" -}}
app.kubernetes.io/name: kaito-workspace
app.kubernetes.io/part-of: kaito
app.kubernetes.io/component: controller
{{- end }}

{{/* The provisioner options as KEY=VALUE,KEY=VALUE (keys sorted). */}}
{{- define "kaito.provisionerOptions" -}}
{{- $first := true -}}
{{- range $key, $value := .Values.provisionerOptions -}}
{{- if not $first }},{{ end -}}
{{- printf "%s=%v" $key $value -}}
{{- $first = false -}}
{{- end -}}
{{- end }}
