#!/usr/bin/env bash
# lifeguard benchmark: request rate and latency (direct vs through lifeguard),
# lifeguard's memory and CPU per request, and 1 GiB streamed each way.
# See bench/README.md. Everything runs on 127.0.0.1.
#
# Environment overrides:
#   BENCH_CONNECTIONS   concurrent keep-alive connections   (default 32)
#   BENCH_DURATION      seconds per request-rate pass        (default 10)
#   BENCH_HIGH_CONNECTIONS, BENCH_HIGH_DURATION
#                       the extra high-concurrency passes    (default 256, 5)
#   BENCH_BODY_BYTES    response body of the test upstream   (default 128)
#   BENCH_STREAM_BYTES  bytes per streaming transfer         (default 1 GiB)
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=${BENCH_CONNECTIONS:-32}
DURATION=${BENCH_DURATION:-10}
HIGH_CONNECTIONS=${BENCH_HIGH_CONNECTIONS:-256}
HIGH_DURATION=${BENCH_HIGH_DURATION:-5}
BODY_BYTES=${BENCH_BODY_BYTES:-128}
STREAM_BYTES=${BENCH_STREAM_BYTES:-1073741824}

cargo build --quiet --release --bin lifeguard --example loadgen
TARGET_DIR=${CARGO_TARGET_DIR:-target}
LIFEGUARD=$TARGET_DIR/release/lifeguard
LOADGEN=$TARGET_DIR/release/examples/loadgen

TMP=$(mktemp -d "${TMPDIR:-/tmp}/lifeguard-bench.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
    echo "bench: $*" >&2
    exit 1
}

# wait_for_line FILE PATTERN PID: the first line of FILE matching PATTERN
# (grep -E), waiting up to 10 s while PID is alive.
wait_for_line() {
    local file=$1 pattern=$2 pid=$3 line i
    for ((i = 0; i < 200; i++)); do
        if line=$(grep -m1 -E "$pattern" "$file" 2>/dev/null); then
            printf '%s\n' "$line"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "bench: no line matching /$pattern/ in $file:" >&2
    cat "$file" >&2
    return 1
}

# VmRSS and VmHWM of PID, in MiB.
mem() {
    awk '/^VmRSS:/ { r = $2 } /^VmHWM:/ { h = $2 }
         END { printf "%9.1f MiB %9.1f MiB", r / 1024, h / 1024 }' "/proc/$1/status"
}

# start_lifeguard NAME LEVEL: sets LG_PID and LG_ADDR. Logs go to $TMP/NAME.log.
start_lifeguard() {
    local name=$1 level=$2 cfg=$TMP/$1.yaml log=$TMP/$1.log line
    cat >"$cfg" <<EOF
listen: "127.0.0.1:0"
admin:
  listen: "127.0.0.1:0"
app:
  endpoints: ["$UPSTREAM"]
drain:
  delay: 0s
  timeout: 1s
log:
  format: json
  level: "$level"
EOF
    "$LIFEGUARD" --config "$cfg" >"$log" 2>&1 &
    LG_PID=$!
    PIDS+=("$LG_PID")
    line=$(wait_for_line "$log" '"message":"lifeguard started"' "$LG_PID") ||
        die "lifeguard ($name) did not start"
    LG_ADDR=$(sed -E 's/.*"listen":"([^"]+)".*/\1/' <<<"$line")
    [[ $LG_ADDR == 127.0.0.1:* ]] || die "cannot parse the listen address from: $line"
}

# stop_lifeguard PID: SIGTERM (drain.delay is 0s), reap it, and forget its PID
# so the EXIT trap never signals a recycled one.
stop_lifeguard() {
    local pid keep=()
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do
        [[ $pid == "$1" ]] || keep+=("$pid")
    done
    PIDS=("${keep[@]}")
}

load() { # CONNECTIONS DURATION LABEL TARGET [--proxy-pid PID]
    local connections=$1 duration=$2 label=$3 target=$4
    shift 4
    "$LOADGEN" client --target "$target" --connections "$connections" \
        --duration "$duration" --label "$label" --upstream "$UPSTREAM" "$@"
}

# --------------------------------------------------------------------------
"$LOADGEN" upstream --listen 127.0.0.1:0 --body-bytes "$BODY_BYTES" >"$TMP/upstream.out" 2>&1 &
UPSTREAM_PID=$!
PIDS+=("$UPSTREAM_PID")
UPSTREAM=$(wait_for_line "$TMP/upstream.out" '^127\.0\.0\.1:[0-9]+$' "$UPSTREAM_PID") ||
    die "upstream did not start"

echo "lifeguard benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs" \
    "($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), Linux $(uname -r)," \
    "load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "upstream: loadgen upstream on $UPSTREAM (hyper HTTP/1.1, ${BODY_BYTES}-byte body);" \
    "client: loadgen, $CONNECTIONS keep-alive connections, closed loop, ${DURATION}s per pass, GET /"
echo "lifeguard 'warn' runs with log.level \"warn,lifeguard::app=info\" (no access log;" \
    "the startup line stays on to read the port); 'info' writes one JSON access-log line per request to a file"
echo

# -- request rate ----------------------------------------------------------
echo "Request rate and latency. latency: request sent to last response byte. app conns: TCP connections"
echo "the upstream accepted during the pass (direct: the client's; via lifeguard: lifeguard's pool)."
echo "CPU/1k: lifeguard CPU time (user+sys) per 1000 requests; cores: lifeguard CPU time / wall time."
"$LOADGEN" header load
load "$CONNECTIONS" "$DURATION" "baseline: direct to upstream" "$UPSTREAM"

start_lifeguard warn "warn,lifeguard::app=info"
WARN_PID=$LG_PID
WARN_ADDR=$LG_ADDR
MEM_IDLE=$(mem "$WARN_PID")
load "$CONNECTIONS" "$DURATION" "via lifeguard, log=warn" "$WARN_ADDR" --proxy-pid "$WARN_PID"
MEM_AFTER=$(mem "$WARN_PID")

start_lifeguard info info
INFO_PID=$LG_PID
load "$CONNECTIONS" "$DURATION" "via lifeguard, log=info" "$LG_ADDR" --proxy-pid "$INFO_PID"
INFO_MEM_AFTER=$(mem "$INFO_PID")
stop_lifeguard "$INFO_PID"

load "$HIGH_CONNECTIONS" "$HIGH_DURATION" "baseline: direct to upstream" "$UPSTREAM"
load "$HIGH_CONNECTIONS" "$HIGH_DURATION" "via lifeguard, log=warn" "$WARN_ADDR" --proxy-pid "$WARN_PID"
MEM_AFTER_HIGH=$(mem "$WARN_PID")
sleep 3 # pooled app connections expire after app.pool_idle_timeout (2s)
MEM_LATER=$(mem "$WARN_PID")
stop_lifeguard "$WARN_PID"

INFO_LINES=$(grep -c '"target":"access"' "$TMP/info.log" || true)
INFO_BYTES=$(grep '"target":"access"' "$TMP/info.log" | wc -c)
echo "  access log of the log=info pass: $INFO_LINES lines, $((INFO_BYTES / (INFO_LINES > 0 ? INFO_LINES : 1)))" \
    "bytes/line ($(awk -v b="$INFO_BYTES" 'BEGIN { printf "%.1f", b / 1048576 }') MiB), written to a file"
echo

# -- memory ----------------------------------------------------------------
echo "lifeguard memory (from /proc/PID/status)"
printf '%-44s %13s %13s\n' "" "VmRSS" "VmHWM (peak)"
printf '%-44s %s\n' "log=warn: idle, after start" "$MEM_IDLE"
printf '%-44s %s\n' "log=warn: after the C=$CONNECTIONS pass" "$MEM_AFTER"
printf '%-44s %s\n' "log=warn: after the C=$HIGH_CONNECTIONS pass" "$MEM_AFTER_HIGH"
printf '%-44s %s\n' "log=warn: 3s later (idle app conns expired)" "$MEM_LATER"
printf '%-44s %s\n' "log=info: after the C=$CONNECTIONS pass" "$INFO_MEM_AFTER"
echo

# -- streaming -------------------------------------------------------------
STREAM_MIB=$((STREAM_BYTES / 1048576))
echo "Streaming ${STREAM_MIB} MiB in one request (upload: chunked POST /sink; download: GET /source)"
echo "VmRSS/VmHWM are lifeguard's (a fresh process, log=warn) right after each transfer"
start_lifeguard stream "warn,lifeguard::app=info"
STREAM_PID=$LG_PID
read -r IDLE_RSS _ IDLE_HWM _ <<<"$(mem "$STREAM_PID")"
echo "lifeguard idle before the transfers: VmRSS $IDLE_RSS MiB, VmHWM $IDLE_HWM MiB"
"$LOADGEN" header stream
"$LOADGEN" upload --target "$UPSTREAM" --bytes "$STREAM_BYTES" --label "upload, direct"
"$LOADGEN" upload --target "$LG_ADDR" --bytes "$STREAM_BYTES" --label "upload, via lifeguard" \
    --proxy-pid "$STREAM_PID"
"$LOADGEN" download --target "$UPSTREAM" --bytes "$STREAM_BYTES" --label "download, direct"
"$LOADGEN" download --target "$LG_ADDR" --bytes "$STREAM_BYTES" --label "download, via lifeguard" \
    --proxy-pid "$STREAM_PID"
HWM_KIB=$(awk '/^VmHWM:/ { print $2 }' "/proc/$STREAM_PID/status")
if ((HWM_KIB * 1024 < STREAM_BYTES / 8)); then
    echo "    bodies streamed: lifeguard's peak RSS $((HWM_KIB / 1024)) MiB stayed far below the ${STREAM_MIB} MiB transferred"
else
    echo "    WARNING: lifeguard's peak RSS $((HWM_KIB / 1024)) MiB is not far below the ${STREAM_MIB} MiB transferred: buffering?"
fi
stop_lifeguard "$STREAM_PID"
