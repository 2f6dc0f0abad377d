{{/* Names and labels. */}}
{{- define "lifeguard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "lifeguard.fullname" -}}
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

{{- define "lifeguard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lifeguard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "lifeguard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "lifeguard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "lifeguard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "lifeguard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "lifeguard.tokenSecretName" -}}
{{- default (printf "%s-admin-token" (include "lifeguard.fullname" .)) .Values.lifeguard.adminToken.existingSecret -}}
{{- end -}}

{{/* Paths inside the lifeguard container. */}}
{{- define "lifeguard.configPath" -}}/etc/lifeguard/config.yaml{{- end -}}
{{- define "lifeguard.tokenPath" -}}/etc/lifeguard-token/token{{- end -}}
{{- define "lifeguard.tlsDir" -}}/etc/lifeguard-tls{{- end -}}
{{- define "lifeguard.runDir" -}}/run/lifeguard{{- end -}}

{{/*
The drain budget and the pod's grace period. drain.timeout counts from the
start of the drain (drain.delay included); the grace period must leave
lifeguard's margin after it: max(2s, 5% of the grace period), the rule
`lifeguard check` warns on.
*/}}
{{- define "lifeguard.gracePeriod" -}}
{{- $delay := int .Values.lifeguard.drain.delaySeconds -}}
{{- $timeout := int .Values.lifeguard.drain.timeoutSeconds -}}
{{- if ge $delay $timeout -}}
{{- fail (printf "lifeguard.drain.delaySeconds (%d) must be below lifeguard.drain.timeoutSeconds (%d): the timeout counts from the start of the drain, delay included" $delay $timeout) -}}
{{- end -}}
{{- $grace := add $timeout 10 -}}
{{- if not (kindIs "invalid" .Values.terminationGracePeriodSeconds) -}}
{{- $grace = int .Values.terminationGracePeriodSeconds -}}
{{- end -}}
{{- if or (gt (add $timeout 2) $grace) (gt (mul 20 $timeout) (mul 19 $grace)) -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed lifeguard.drain.timeoutSeconds (%d) by max(2s, 5%%): requests still in flight at the drain deadline would be cut by SIGKILL" $grace $timeout) -}}
{{- end -}}
{{- $grace -}}
{{- end -}}

{{/* How long the app's preStop hook waits for the drain: drain.timeout + 5s. */}}
{{- define "lifeguard.drainedWait" -}}
{{- add (int .Values.lifeguard.drain.timeoutSeconds) 5 -}}s
{{- end -}}

{{/* lifeguard's config.yaml, rendered from the values. */}}
{{- define "lifeguard.config" -}}
{{- $lg := .Values.lifeguard -}}
{{- $c := deepCopy ($lg.config | default dict) -}}
{{- range $key := list "listen" "admin" "drain" -}}
{{- if hasKey $c $key -}}
{{- fail (printf "lifeguard.config.%s is set by the chart (lifeguard.port, lifeguard.adminPort, lifeguard.adminToken, lifeguard.drain): remove it from lifeguard.config" $key) -}}
{{- end -}}
{{- end -}}
{{- if and $lg.tls.enabled (hasKey $c "tls") -}}
{{- fail "lifeguard.config.tls is set by the chart when lifeguard.tls.enabled: remove it from lifeguard.config" -}}
{{- end -}}
{{- $_ := set $c "listen" (printf "0.0.0.0:%d" (int $lg.port)) -}}
{{- $admin := dict "listen" (printf "0.0.0.0:%d" (int $lg.adminPort)) -}}
{{- if $lg.adminToken.enabled -}}
{{- $_ := set $admin "token_file" (include "lifeguard.tokenPath" .) -}}
{{- end -}}
{{- $_ := set $c "admin" $admin -}}
{{- $app := get $c "app" | default dict -}}
{{- if not (hasKey $app "endpoints") -}}
{{- $_ := set $app "endpoints" (list (printf "127.0.0.1:%d" (int .Values.app.port))) -}}
{{- end -}}
{{- $_ := set $c "app" $app -}}
{{- $_ := set $c "drain" (dict
      "delay" (printf "%ds" (int $lg.drain.delaySeconds))
      "timeout" (printf "%ds" (int $lg.drain.timeoutSeconds))
      "grace_period" (printf "%ss" (include "lifeguard.gracePeriod" .))) -}}
{{- if $lg.tls.enabled -}}
{{- if not $lg.tls.secretName -}}
{{- fail "lifeguard.tls.enabled needs lifeguard.tls.secretName (a kubernetes.io/tls Secret)" -}}
{{- end -}}
{{- $_ := set $c "tls" (dict
      "cert_file" (printf "%s/tls.crt" (include "lifeguard.tlsDir" .))
      "key_file" (printf "%s/tls.key" (include "lifeguard.tlsDir" .))) -}}
{{- end -}}
{{- if $lg.maintenanceFlagFile.enabled -}}
{{- $m := get $c "maintenance" | default dict -}}
{{- $_ := set $m "flag_file" (printf "%s/maintenance" (include "lifeguard.runDir" .)) -}}
{{- $_ := set $c "maintenance" $m -}}
{{- end -}}
{{- toYaml $c -}}
{{- end -}}

{{/* The app container's preStop handler (see docs/drain-and-kubernetes.md). */}}
{{- define "lifeguard.appPreStop" -}}
{{- $native := eq .Values.sidecar.mode "native" -}}
{{- $base := printf "http://127.0.0.1:%d" (int .Values.lifeguard.adminPort) -}}
{{- $drain := printf "%s/admin/drain" $base -}}
{{- $drained := printf "%s/admin/drained?wait=%s" $base (include "lifeguard.drainedWait" .) -}}
{{- $maxTime := add (int .Values.lifeguard.drain.timeoutSeconds) 10 -}}
{{- $client := .Values.app.preStop.client -}}
{{- if .Values.app.preStop.command -}}
exec:
  command:
    {{- toYaml .Values.app.preStop.command | nindent 4 }}
{{- else if eq $client "httpGet" -}}
{{- if $native -}}
{{- fail "app.preStop.client=httpGet works only with sidecar.mode=classic: in native mode the hook must POST /admin/drain from loopback, which the kubelet's httpGet cannot do; use node, curl, wget or app.preStop.command" -}}
{{- end -}}
httpGet:
  path: {{ printf "/admin/drained?wait=%s" (include "lifeguard.drainedWait" .) }}
  port: {{ int .Values.lifeguard.adminPort }}
{{- else if eq $client "node" -}}
exec:
  command:
    - node
    - -e
    {{- if $native }}
    - {{ printf "fetch('%s', {method: 'POST'}).then(() => fetch('%s')).catch(() => {})" $drain $drained | quote }}
    {{- else }}
    - {{ printf "fetch('%s').catch(() => {})" $drained | quote }}
    {{- end }}
{{- else if eq $client "curl" -}}
exec:
  command:
    {{- if $native }}
    - sh
    - -c
    - {{ printf "curl -sS -o /dev/null --max-time 5 -X POST '%s'; curl -sS -o /dev/null --max-time %d '%s'; exit 0" $drain $maxTime $drained | quote }}
    {{- else }}
    - curl
    - -sS
    - -o
    - /dev/null
    - --max-time
    - {{ $maxTime | quote }}
    - {{ $drained | quote }}
    {{- end }}
{{- else if eq $client "wget" -}}
exec:
  command:
    - sh
    - -c
    {{- if $native }}
    - {{ printf "wget -q -O /dev/null -T 5 --post-data '' '%s'; wget -q -O /dev/null -T %d '%s'; exit 0" $drain $maxTime $drained | quote }}
    {{- else }}
    - {{ printf "wget -q -O /dev/null -T %d '%s'; exit 0" $maxTime $drained | quote }}
    {{- end }}
{{- else -}}
{{- fail (printf "app.preStop.client: unknown client %q (node, curl, wget, httpGet)" $client) -}}
{{- end -}}
{{- end -}}

{{/* lifeguard's volumes: config, admin token, TLS, the flag-file directory. */}}
{{- define "lifeguard.volumes" -}}
- name: lifeguard-config
  configMap:
    name: {{ include "lifeguard.fullname" . }}-config
{{- if .Values.lifeguard.adminToken.enabled }}
- name: lifeguard-admin-token
  secret:
    secretName: {{ include "lifeguard.tokenSecretName" . }}
    items:
      - key: {{ .Values.lifeguard.adminToken.key }}
        path: token
{{- end }}
{{- if .Values.lifeguard.tls.enabled }}
- name: lifeguard-tls
  secret:
    secretName: {{ .Values.lifeguard.tls.secretName }}
{{- end }}
{{- if .Values.lifeguard.maintenanceFlagFile.enabled }}
- name: lifeguard-run
  emptyDir:
    medium: Memory
    sizeLimit: 1Mi
{{- end }}
{{- end -}}

{{/*
lifeguard.sidecar: lifeguard in the pods of your own chart, with this chart
as a dependency (`app.enabled: false`: no demo app, no Deployment or Service
of its own; it renders lifeguard's ConfigMap, admin token Secret and the
optional monitoring). Call it with the subchart's context
(`.Subcharts.lifeguard`) and your pod's lists; it renders these keys of the
pod spec: terminationGracePeriodSeconds (fits lifeguard's drain),
initContainers (yours; lifeguard last in native mode), containers (yours,
the first one being the app, which gets the preStop hook that waits for
lifeguard's drain unless it has its own; lifeguard last in classic mode) and
volumes (yours, then lifeguard's):

  spec:
    template:
      spec:
        {{- $app := fromYaml (include "shop.appContainer" .) }}
        {{- include "lifeguard.sidecar" (dict "lifeguard" .Subcharts.lifeguard
              "containers" (list $app) "initContainers" .Values.initContainers
              "volumes" .Values.volumes) | nindent 6 }}

The app's port is the subchart's `app.port` (lifeguard's app endpoint);
lifeguard's own port is named `http` (give the app's port another name) and
your Service targets it. The hook's client is `app.preStop.client`
(`httpGet` needs none in the app's image). See the chart's README.
*/}}
{{- define "lifeguard.sidecar" -}}
{{- $lg := .lifeguard -}}
{{- if not $lg -}}
{{- fail "lifeguard.sidecar: pass the subchart's context as \"lifeguard\" (e.g. .Subcharts.lifeguard)" -}}
{{- end -}}
{{- $native := eq $lg.Values.sidecar.mode "native" -}}
{{- if and $native (not (semverCompare ">=1.29-0" $lg.Capabilities.KubeVersion.Version)) -}}
{{- fail (printf "sidecar.mode=native needs Kubernetes >= 1.29 (native sidecar containers); this cluster is %s" $lg.Capabilities.KubeVersion.Version) -}}
{{- end -}}
{{- $containers := list -}}
{{- range $i, $c := (.containers | default list) -}}
{{- if and (eq $i 0) (not (dig "lifecycle" "preStop" "" $c)) -}}
{{- $c = deepCopy $c -}}
{{- $lc := deepCopy (get $c "lifecycle" | default dict) -}}
{{- $_ := set $lc "preStop" (fromYaml (include "lifeguard.appPreStop" $lg)) -}}
{{- $_ := set $c "lifecycle" $lc -}}
{{- end -}}
{{- $containers = append $containers $c -}}
{{- end -}}
{{- if not $containers -}}
{{- fail "lifeguard.sidecar: \"containers\" must list your pod's containers, the app first" -}}
{{- end -}}
{{- $sidecar := fromYamlArray (include "lifeguard.container" $lg) -}}
{{- $inits := .initContainers | default list -}}
{{- if $native -}}
{{- $inits = concat $inits $sidecar -}}
{{- else -}}
{{- $containers = concat $containers $sidecar -}}
{{- end -}}
terminationGracePeriodSeconds: {{ include "lifeguard.gracePeriod" $lg }}
{{- with $inits }}
initContainers:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  {{- toYaml $containers | nindent 2 }}
volumes:
  {{- toYaml (concat (.volumes | default list) (fromYamlArray (include "lifeguard.volumes" $lg))) | nindent 2 }}
{{- end -}}

{{/* The lifeguard container (regular or native sidecar). */}}
{{- define "lifeguard.container" -}}
{{- $lg := .Values.lifeguard -}}
- name: lifeguard
  image: {{ printf "%s:%s" $lg.image.repository (default .Chart.AppVersion $lg.image.tag) | quote }}
  imagePullPolicy: {{ $lg.image.pullPolicy }}
  {{- if eq .Values.sidecar.mode "native" }}
  # A native sidecar: started before the app, stopped after it.
  restartPolicy: Always
  {{- end }}
  args: ["--config", {{ include "lifeguard.configPath" . | quote }}]
  ports:
    - name: http
      containerPort: {{ int $lg.port }}
      protocol: TCP
    - name: admin
      containerPort: {{ int $lg.adminPort }}
      protocol: TCP
  # No preStop hook: in classic mode SIGTERM starts the drain; in native mode
  # the app's hook has drained lifeguard before it gets SIGTERM.
  startupProbe:
    httpGet:
      path: /livez
      port: admin
    periodSeconds: 1
    failureThreshold: 30
  readinessProbe:
    # 503 while no app endpoint is up and from the start of a drain.
    httpGet:
      path: /readyz
      port: admin
    {{- toYaml $lg.readinessProbe | nindent 4 }}
  livenessProbe:
    httpGet:
      path: /livez
      port: admin
    {{- toYaml $lg.livenessProbe | nindent 4 }}
  {{- with $lg.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $lg.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    # A directory mount (never subPath), so ConfigMap updates reach the file
    # and lifeguard's hot reload.
    - name: lifeguard-config
      mountPath: /etc/lifeguard
      readOnly: true
    {{- if $lg.adminToken.enabled }}
    - name: lifeguard-admin-token
      mountPath: /etc/lifeguard-token
      readOnly: true
    {{- end }}
    {{- if $lg.tls.enabled }}
    - name: lifeguard-tls
      mountPath: {{ include "lifeguard.tlsDir" . }}
      readOnly: true
    {{- end }}
    {{- if $lg.maintenanceFlagFile.enabled }}
    - name: lifeguard-run
      mountPath: {{ include "lifeguard.runDir" . }}
    {{- end }}
{{- end -}}
