{{/*
The chart name, truncated to the 63 characters of a DNS label.
*/}}
{{- define "zako.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: <release>-<chart>, or the release name alone when
it already contains the chart name. Kept to 54 characters so "-headless" still fits in 63.
*/}}
{{- define "zako.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "zako.headlessName" -}}
{{- printf "%s-headless" (include "zako.fullname" .) }}
{{- end }}

{{- define "zako.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Standard labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/).
*/}}
{{- define "zako.labels" -}}
helm.sh/chart: {{ include "zako.chart" . }}
{{ include "zako.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/component: server
app.kubernetes.io/part-of: zako
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels: stable across upgrades (a Deployment's selector is immutable).
*/}}
{{- define "zako.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zako.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "zako.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "zako.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "zako.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
A setting's value as the server parses it from ZAKO_<NAME>. Helm reads every number in
values as a float64, which prints 2147483648 as 2.147483648e+09: whole numbers are printed
as integers so that sizes and counts reach the server intact. A map (config.resources)
becomes NAME=AMOUNT,... in key order.
*/}}
{{- define "zako.settingValue" -}}
{{- if kindIs "map" . }}
{{- $pairs := list }}
{{- range $name, $amount := . }}
{{- $pairs = append $pairs (printf "%s=%s" $name (include "zako.settingValue" $amount)) }}
{{- end }}
{{- join "," $pairs }}
{{- else if kindIs "float64" . }}
{{- if eq (floor .) . }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else if kindIs "bool" . }}
{{- ternary "true" "false" . }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/*
Seconds of drain grace, rounded up: config.drain_grace may be fractional.
*/}}
{{- define "zako.drainGraceSeconds" -}}
{{- $drain := required "config.drain_grace is required" .Values.config.drain_grace }}
{{- ceil $drain | int64 }}
{{- end }}

{{/*
terminationGracePeriodSeconds: long enough for the preStop sleep, the server's drain grace
and the cancel-and-stop tail after it. A value set by hand must still exceed
preStopSleepSeconds + drain_grace: Kubernetes would otherwise SIGKILL the server while it
is still draining, and the tasks in flight would never get their terminal events.
*/}}
{{- define "zako.terminationGracePeriodSeconds" -}}
{{- $drain := include "zako.drainGraceSeconds" . | int64 }}
{{- $preStop := .Values.preStopSleepSeconds | int64 }}
{{- $computed := add $preStop $drain .Values.terminationGraceMarginSeconds | int64 }}
{{- $set := .Values.terminationGracePeriodSeconds }}
{{- if kindIs "invalid" $set }}
{{- $computed }}
{{- else if le (float64 $set) (addf $preStop .Values.config.drain_grace) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed preStopSleepSeconds (%d) + config.drain_grace (%v), or the server is killed while it drains; leave it null to get %d" $set $preStop .Values.config.drain_grace $computed) }}
{{- else }}
{{- $set | int64 }}
{{- end }}
{{- end }}

{{/*
Port the kubelet's plaintext gRPC probes target: the gRPC port, or with TLS a
plaintext health-only port.
*/}}
{{- define "zako.probePort" -}}
{{- if .Values.tls.enabled }}{{ .Values.tls.healthPort | int }}{{ else }}{{ .Values.service.port | int }}{{ end }}
{{- end }}

{{/*
Checks that span several values.
*/}}
{{- define "zako.validate" -}}
{{- if hasKey .Values.config "listen" }}
{{- fail "config.listen is set by the chart (0.0.0.0:<service.port>); set service.port instead" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled" }}
{{- end }}
{{- if and .Values.tls.enabled (eq (int .Values.tls.healthPort) (int .Values.service.port)) }}
{{- fail "tls.healthPort must differ from service.port" }}
{{- end }}
{{- if and .Values.metrics.enabled (or (eq (int .Values.metrics.port) (int .Values.service.port)) (and .Values.tls.enabled (eq (int .Values.metrics.port) (int .Values.tls.healthPort)))) }}
{{- fail "metrics.port must differ from service.port and tls.healthPort" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (not .Values.autoscaling.targetCPUUtilizationPercentage) (not .Values.autoscaling.queueLength.enabled) }}
{{- fail "autoscaling needs a metric: targetCPUUtilizationPercentage or queueLength.enabled" }}
{{- end }}
{{- end }}
