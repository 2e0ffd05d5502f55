{{/* Names, labels and API versions shared by the templates. */}}
{{- define "infertap.name" -}}{{ .Chart.Name }}{{- end -}}

{{- define "infertap.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "infertap.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ include "infertap.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* selector labels of one component: (dict "ctx" $ "component" "webhook") */}}
{{- define "infertap.selector" -}}
app.kubernetes.io/name: {{ include "infertap.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "infertap.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "infertap.driftImage" -}}
{{ .Values.driftImage.repository }}:{{ .Values.driftImage.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "infertap.webhookName" -}}{{ include "infertap.fullname" . }}-webhook{{- end -}}
{{- define "infertap.collectorName" -}}{{ include "infertap.fullname" . }}-collector{{- end -}}
{{- define "infertap.driftName" -}}{{ include "infertap.fullname" . }}-drift{{- end -}}
{{- define "infertap.webhookSecret" -}}{{ include "infertap.webhookName" . }}-tls{{- end -}}

{{/* API versions: Kubernetes 1.20 when compat.kubernetes120 says so, else what the cluster serves */}}
{{- define "infertap.cronJobApiVersion" -}}
{{- if and (not .Values.compat.kubernetes120) (or (.Capabilities.APIVersions.Has "batch/v1/CronJob") (semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version)) -}}batch/v1{{- else -}}batch/v1beta1{{- end -}}
{{- end -}}
{{- define "infertap.hpaApiVersion" -}}
{{- if and (not .Values.compat.kubernetes120) (or (.Capabilities.APIVersions.Has "autoscaling/v2/HorizontalPodAutoscaler") (semverCompare ">=1.23-0" .Capabilities.KubeVersion.Version)) -}}autoscaling/v2{{- else -}}autoscaling/v2beta2{{- end -}}
{{- end -}}
{{- define "infertap.pdbApiVersion" -}}
{{- if and (not .Values.compat.kubernetes120) (or (.Capabilities.APIVersions.Has "policy/v1/PodDisruptionBudget") (semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version)) -}}policy/v1{{- else -}}policy/v1beta1{{- end -}}
{{- end -}}

{{- define "infertap.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* the injection ConfigMap document: the values' config with the chart's image by default */}}
{{- define "infertap.injectionConfig" -}}
{{- $doc := deepCopy .Values.injection.config -}}
{{- if not (hasKey $doc "image") -}}{{- $_ := set $doc "image" (include "infertap.image" .) -}}{{- end -}}
{{- if not (hasKey $doc "image_pull_policy") -}}{{- $_ := set $doc "image_pull_policy" .Values.image.pullPolicy -}}{{- end -}}
{{- if .Values.injection.forwardToCollector -}}
{{- $env := deepCopy ($doc.env | default dict) -}}
{{- $url := printf "http://%s.%s.svc.cluster.local:%v" (include "infertap.collectorName" .) .Release.Namespace .Values.collector.servicePort -}}
{{- $_ := set $env "INFERTAP_CAPTURE_PLACEMENT" ($env.INFERTAP_CAPTURE_PLACEMENT | default "forward") -}}
{{- $_ := set $env "INFERTAP_FORWARD_COLLECTOR_URL" ($env.INFERTAP_FORWARD_COLLECTOR_URL | default $url) -}}
{{- $_ := set $doc "env" $env -}}
{{- end -}}
{{- toYaml $doc -}}
{{- end -}}

{{/* one drift/canary job's pod template spec: (dict "ctx" $ "job" $job "args" $args) */}}
{{- define "infertap.jobPodSpec" -}}
{{- $ctx := .ctx -}}
restartPolicy: Never
serviceAccountName: {{ include "infertap.driftName" $ctx }}
automountServiceAccountToken: false
securityContext:
  fsGroup: 65532
{{- include "infertap.imagePullSecrets" $ctx }}
containers:
  - name: drift
    image: {{ include "infertap.driftImage" $ctx }}
    imagePullPolicy: {{ $ctx.Values.driftImage.pullPolicy }}
    command: [infertap]
    args:
      {{- toYaml .args | nindent 6 }}
    {{- with .job.env }}
    env:
      {{- range $k, $v := . }}
      - name: {{ $k }}
        value: {{ $v | quote }}
      {{- end }}
    {{- end }}
    securityContext:
      {{- toYaml $ctx.Values.securityContext | nindent 6 }}
    resources:
      {{- toYaml ($ctx.Values.drift.resources) | nindent 6 }}
    volumeMounts:
      - {name: tmp, mountPath: /tmp}
      {{- if .job.baseline }}
      - {name: baseline, mountPath: /etc/infertap/baseline, readOnly: true}
      {{- end }}
      {{- with .job.volumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  - name: tmp
    emptyDir: {sizeLimit: 1Gi}
  {{- if .job.baseline }}
  - name: baseline
    configMap:
      name: {{ .job.baseline.configMap }}
  {{- end }}
  {{- with .job.volumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}
