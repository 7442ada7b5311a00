{{/* Names and labels. */}}
{{- define "stream-relay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "stream-relay.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "stream-relay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stream-relay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "stream-relay.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "stream-relay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "stream-relay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "stream-relay.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The workload kind: a StatefulSet when the spool is persistent. */}}
{{- define "stream-relay.kind" -}}
{{- if .Values.spool.persistent -}}StatefulSet{{- else -}}Deployment{{- end -}}
{{- end -}}

{{/* Secret names: the user's or the chart's; "" when there is none. */}}
{{- define "stream-relay.relayKeysSecret" -}}
{{- if .Values.relayKeys.existingSecret -}}
{{- .Values.relayKeys.existingSecret -}}
{{- else if .Values.relayKeys.keys -}}
{{- printf "%s-relay-keys" (include "stream-relay.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "stream-relay.providerKeysSecret" -}}
{{- if .Values.providerKeys.existingSecret -}}
{{- .Values.providerKeys.existingSecret -}}
{{- else if .Values.providerKeys.values -}}
{{- printf "%s-provider-keys" (include "stream-relay.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
stream-relay.seconds: a Go duration ("30s", "1m30s", "500ms") or a number of
seconds (what the relay accepts) as whole seconds, rounded up. Fails on
anything else, naming the value.
*/}}
{{- define "stream-relay.seconds" -}}
{{- $v := .value -}}
{{- if kindIs "invalid" $v -}}
{{- $v = .default -}}
{{- end -}}
{{- if or (kindIs "float64" $v) (kindIs "int" $v) (kindIs "int64" $v) -}}
{{- ceil $v | int -}}
{{- else if regexMatch "^[0-9]+$" (toString $v) -}}
{{- $v -}}
{{- else if regexMatch "^([0-9]+(\\.[0-9]+)?(h|m|s|ms|us|ns))+$" (toString $v) -}}
{{- $unit := dict "h" 3600.0 "m" 60.0 "s" 1.0 "ms" 0.001 "us" 0.000001 "ns" 0.000000001 -}}
{{- $total := 0.0 -}}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(h|ms|m|s|us|ns)" (toString $v) -1 -}}
{{- $n := regexFind "^[0-9.]+" . | float64 -}}
{{- $u := regexReplaceAll "^[0-9.]+" . "" -}}
{{- $total = addf $total (mulf $n (get $unit $u)) -}}
{{- end -}}
{{- ceil $total | int -}}
{{- else -}}
{{- fail (printf "%s=%v: not a duration (e.g. 30s, 1m30s) nor a number of seconds" .name $v) -}}
{{- end -}}
{{- end -}}

{{/* server.shutdown_grace in whole seconds (relay default 30s; 0 is unset to the relay, so the default too). */}}
{{- define "stream-relay.shutdownGraceSeconds" -}}
{{- range .Values.env -}}
{{- if eq (.name | default "") "RELAY_SERVER__SHUTDOWN_GRACE" -}}
{{- fail "env: RELAY_SERVER__SHUTDOWN_GRACE: set config.server.shutdown_grace instead (terminationGracePeriodSeconds is computed from it; an env override drained past it and was killed)" -}}
{{- end -}}
{{- end -}}
{{- if hasKey ((.Values.providerKeys | default dict).values | default dict) "RELAY_SERVER__SHUTDOWN_GRACE" -}}
{{- fail "providerKeys.values: RELAY_SERVER__SHUTDOWN_GRACE: set config.server.shutdown_grace instead (terminationGracePeriodSeconds is computed from it)" -}}
{{- end -}}
{{- $server := .Values.config.server | default dict -}}
{{- $s := include "stream-relay.seconds" (dict "value" $server.shutdown_grace "default" "30s" "name" "config.server.shutdown_grace") | int -}}
{{- if eq $s 0 -}}30{{- else -}}{{- $s -}}{{- end -}}
{{- end -}}

{{/* terminationGracePeriodSeconds: preStop sleep + shutdown_grace + margin, or the override. */}}
{{- define "stream-relay.terminationGrace" -}}
{{- $grace := include "stream-relay.shutdownGraceSeconds" . | int -}}
{{- $sleep := .Values.preStop.sleepSeconds | default 0 | int -}}
{{- $floor := add $sleep $grace -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- add $floor (.Values.terminationMarginSeconds | int) -}}
{{- else -}}
{{- $set := .Values.terminationGracePeriodSeconds | int -}}
{{- if le $set $floor -}}
{{- fail (printf "terminationGracePeriodSeconds=%d: must exceed preStop.sleepSeconds + server.shutdown_grace = %d s, or streams are killed before they finish" $set $floor) -}}
{{- end -}}
{{- $set -}}
{{- end -}}
{{- end -}}

{{/* The relay's port (server.port, default 8080). */}}
{{- define "stream-relay.port" -}}
{{- $server := .Values.config.server | default dict -}}
{{- $server.port | default 8080 | int -}}
{{- end -}}

{{/* The metrics listener's port from metrics.addr ("host:port" or ":port"); "" when /metrics is on the relay port. */}}
{{- define "stream-relay.metricsPort" -}}
{{- $m := .Values.config.metrics | default dict -}}
{{- with $m.addr -}}
{{- $port := regexFind "[0-9]+$" (toString .) -}}
{{- if not $port -}}
{{- fail (printf "config.metrics.addr=%s: needs a port (host:port or :port)" .) -}}
{{- end -}}
{{- $port -}}
{{- end -}}
{{- end -}}

{{/* HTTP or HTTPS for probes, by tls.secretName or config.server.tls_cert. */}}
{{- define "stream-relay.scheme" -}}
{{- $server := .Values.config.server | default dict -}}
{{- if or .Values.tls.secretName $server.tls_cert -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}

{{/*
stream-relay.config: config.yaml as the relay reads it, from .Values.config,
with storage.spool_dir on the spool volume and the TLS paths. Refuses
secrets: they belong in relayKeys / providerKeys.
*/}}
{{- define "stream-relay.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- $auth := $cfg.auth | default dict -}}
{{- range $i, $k := ($auth.keys | default list) -}}
{{- if $k.key -}}
{{- fail (printf "config.auth.keys[%d].key: a relay key in the ConfigMap; give it in relayKeys (the chart hashes it into a Secret), or give key_sha256" $i) -}}
{{- end -}}
{{- end -}}
{{- if and $auth.keys (include "stream-relay.relayKeysSecret" .) -}}
{{- fail "config.auth.keys and relayKeys are both set: give the relay keys in one place (relayKeys)" -}}
{{- end -}}
{{- $host := dig "server" "host" "" $cfg | toString -}}
{{- if regexMatch "^(localhost|127\\.|\\[?::1\\]?$)" $host -}}
{{- fail (printf "config.server.host=%s: a loopback address; the kubelet's probes and the Service reach the pod IP (leave it \"\")" $host) -}}
{{- end -}}
{{- $maddr := dig "metrics" "addr" "" $cfg | toString -}}
{{- if regexMatch "^(localhost|127\\.|\\[::1\\])" $maddr -}}
{{- fail (printf "config.metrics.addr=%s: a loopback address; Prometheus scrapes the pod IP (use :PORT)" $maddr) -}}
{{- end -}}
{{- $storage := $cfg.storage | default dict -}}
{{- $redis := $storage.redis | default dict -}}
{{- $ch := $storage.clickhouse | default dict -}}
{{- if $redis.password -}}
{{- fail "config.storage.redis.password: a secret in the ConfigMap; put RELAY_STORAGE__REDIS__PASSWORD in the providerKeys Secret" -}}
{{- end -}}
{{- if $ch.password -}}
{{- fail "config.storage.clickhouse.password: a secret in the ConfigMap; put RELAY_STORAGE__CLICKHOUSE__PASSWORD in the providerKeys Secret" -}}
{{- end -}}
{{- if and $ch.cluster (not $ch.urls) (not $ch.url) -}}
{{- fail "config.storage.clickhouse.cluster: needs urls (the cluster's nodes the relay may talk to)" -}}
{{- end -}}
{{- if $storage.spool_dir -}}
{{- fail "config.storage.spool_dir: set by the chart (spool.mountPath/spool); change spool.mountPath instead" -}}
{{- end -}}
{{- if and $ch.urls (hasKey $ch "url") (not $ch.url) -}}
{{- $_ := unset $ch "url" -}}
{{- end -}}
{{- $_ := set $storage "spool_dir" (printf "%s/spool" (trimSuffix "/" .Values.spool.mountPath)) -}}
{{- $_ = set $cfg "storage" $storage -}}
{{- if .Values.tls.secretName -}}
{{- $server := $cfg.server | default dict -}}
{{- $_ = set $server "tls_cert" "/etc/stream-relay/tls/tls.crt" -}}
{{- $_ = set $server "tls_key" "/etc/stream-relay/tls/tls.key" -}}
{{- $_ = set $cfg "server" $server -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
