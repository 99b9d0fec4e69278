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

{{/* The dashboard's container in the operator's pods (dashboard.enabled). */}}
{{- define "kubeinfer-operator.dashboardContainer" -}}
- name: dashboard
  image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: [kubeinfer]
  args:
    - dashboard
    - --host
    - 0.0.0.0
    - --port
    - {{ .Values.dashboard.port | quote }}
    - --interval
    - {{ .Values.dashboard.interval | quote }}
    {{- if .Values.dashboard.namespace }}
    - --namespace
    - {{ .Values.dashboard.namespace }}
    {{- else }}
    - --all-namespaces
    {{- end }}
  env:
    - {name: HOME, value: /tmp}
  ports:
    - {name: dashboard, containerPort: {{ .Values.dashboard.port }}, protocol: TCP}
  readinessProbe:
    # the dashboard answers a loopback Host only, as kubectl port-forward brings it
    httpGet:
      path: /
      port: dashboard
      httpHeaders: [{name: Host, value: localhost}]
    periodSeconds: 10
  resources:
    {{- toYaml .Values.dashboard.resources | nindent 4 }}
  securityContext:
    readOnlyRootFilesystem: true
    allowPrivilegeEscalation: false
    capabilities: {drop: [ALL]}
  volumeMounts:
    - {name: tmp, mountPath: /tmp}
{{- end -}}
