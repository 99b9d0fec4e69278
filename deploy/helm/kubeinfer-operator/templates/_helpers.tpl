{{- define "kubeinfer-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "kubeinfer-operator.serviceAccountName" -}}
{{- default (include "kubeinfer-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "kubeinfer-operator.labels" -}}
app.kubernetes.io/name: kubeinfer-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: kubeinfer
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kubeinfer-operator.selectorLabels" -}}
app.kubernetes.io/name: kubeinfer-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
