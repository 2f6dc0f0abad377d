#!/usr/bin/env bash
# Cost per request and per connection: lifeguard side by side with nginx and
# HAProxy, in one run, on the same upstream. See bench/README.md.
#
# Pinning: the proxy under test runs on CPU 0 alone; the upstream (a fast
# hyper app, `loadgen upstream`) and every load generator run on CPU 1. CPU
# per request is the proxy's user+system time from /proc (all its processes)
# divided by the requests served, so it does not depend on how busy the
# other core is. Everything targets 127.0.0.1.
#
# Installs (once, idempotently) what it needs from Debian: nginx-light,
# haproxy, wrk, nghttp2-client (h2load).
#
# Environment overrides:
#   COMPARE_DURATION   seconds per load pass                  (default 10)
#   COMPARE_HOLD       connections held for the memory rows   (default 5000)
#   COMPARE_PROXIES    which proxies, in order      (default "nginx haproxy lifeguard")
#   COMPARE_BEFORE     a lifeguard binary built from an earlier commit: adds a
#                      column "before" (e.g. git worktree add /tmp/old REV &&
#                      cargo build --release --manifest-path /tmp/old/Cargo.toml)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${COMPARE_DURATION:-10}
HOLD=${COMPARE_HOLD:-5000}
PROXIES=${COMPARE_PROXIES:-nginx haproxy ${COMPARE_BEFORE:+before} lifeguard}
PROXY_CPU=0
LOAD_CPU=1

need=()
for pair in nginx:nginx-light haproxy:haproxy wrk:wrk h2load:nghttp2-client taskset:util-linux; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || [[ -x /usr/sbin/${pair%%:*} ]] || need+=("${pair#*:}")
done
if ((${#need[@]})); then
    echo "compare: installing ${need[*]}" >&2
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
(($(nproc) >= 2)) || { echo "compare: needs 2 CPUs (proxy on one, load on the other)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"

cargo build --quiet --release --locked --bin lifeguard --example loadgen
TARGET_DIR=${CARGO_TARGET_DIR:-target}
LIFEGUARD=$(realpath "$TARGET_DIR/release/lifeguard")
LOADGEN=$(realpath "$TARGET_DIR/release/examples/loadgen")

TMP=$(mktemp -d "${TMPDIR:-/tmp}/lifeguard-compare.XXXXXX")
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    [[ -n ${KEEP_TMP:-} ]] || rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "compare: $*" >&2; exit 1; }
on_load() { taskset -c "$LOAD_CPU" "$@"; }

free_ports() { # two distinct free ports (both bound at once while asked)
    python3 -c 'import socket
a, b = socket.socket(), socket.socket()
a.bind(("127.0.0.1", 0)); b.bind(("127.0.0.1", 0))
print(a.getsockname()[1], b.getsockname()[1])'
}

wait_port() { # PORT
    local i
    for ((i = 0; i < 200; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    die "nothing listens on 127.0.0.1:$1"
}

# Every process of the proxy under test: the main PID and its children
# (nginx's and HAProxy's workers).
proxy_pids() { echo "$PROXY_PID" $(pgrep -P "$PROXY_PID" || true); }

cpu_ticks() { # sum of utime+stime of the proxy's processes
    local pid total=0 f
    for pid in $(proxy_pids); do
        f=$(sed 's/.*) //' "/proc/$pid/stat")
        total=$((total + $(awk '{ print $12 + $13 }' <<<"$f")))
    done
    echo "$total"
}

rss_kib() { # sum of VmRSS of the proxy's processes
    local pid total=0
    for pid in $(proxy_pids); do
        total=$((total + $(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status")))
    done
    echo "$total"
}

HZ=$(getconf CLK_TCK)

start_upstream() {
    on_load "$LOADGEN" upstream --listen 127.0.0.1:0 --body-bytes 128 >"$TMP/upstream.out" 2>&1 &
    UPSTREAM_PID=$!
    PIDS+=("$UPSTREAM_PID")
    local i
    for ((i = 0; i < 200; i++)); do
        UPSTREAM=$(grep -m1 -E '^127\.0\.0\.1:[0-9]+$' "$TMP/upstream.out" || true)
        [[ -n $UPSTREAM ]] && return 0
        sleep 0.05
    done
    die "upstream did not start"
}

write_configs() {
    cat >"$TMP/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile 19000;
pid $TMP/nginx.pid;
error_log $TMP/nginx.err warn;
events { worker_connections 20000; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx-body;
    proxy_temp_path $TMP/nginx-proxy;
    keepalive_requests 1000000;
    upstream app { server $UPSTREAM; keepalive 256; }
    server {
        listen 127.0.0.1:$PORT_H1 backlog=8192;
        listen 127.0.0.1:$PORT_H2 http2 backlog=8192;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 9000
defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    http-reuse always
frontend f1
    bind 127.0.0.1:$PORT_H1
    bind 127.0.0.1:$PORT_H2 proto h2
    default_backend app
backend app
    server s1 $UPSTREAM
EOF
    cat >"$TMP/lifeguard.yaml" <<EOF
listen: "127.0.0.1:$PORT_H1"
admin:
  listen: "127.0.0.1:0"
app:
  endpoints: ["$UPSTREAM"]
client:
  max_connections: 20000
drain:
  delay: 0s
  timeout: 1s
log:
  level: warn
EOF
}

start_proxy() { # NAME
    case $1 in
    nginx) taskset -c "$PROXY_CPU" "$NGINX" -c "$TMP/nginx.conf" -p "$TMP" >"$TMP/nginx.out" 2>&1 & ;;
    haproxy) taskset -c "$PROXY_CPU" "$HAPROXY" -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.out" 2>&1 & ;;
    lifeguard) taskset -c "$PROXY_CPU" "$LIFEGUARD" --config "$TMP/lifeguard.yaml" >"$TMP/lifeguard.out" 2>&1 & ;;
    before) taskset -c "$PROXY_CPU" "$COMPARE_BEFORE" --config "$TMP/lifeguard.yaml" >"$TMP/before.out" 2>&1 & ;;
    esac
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    wait_port "$PORT_H1"
    # lifeguard answers 503 until its first probe passed; every proxy gets a
    # first request so the rows compare warmed-up processes.
    local i
    for ((i = 0; i < 100; i++)); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT_H1/") == 200 ]] && break
        sleep 0.1
    done
    sleep 1
}

stop_proxy() {
    kill -TERM "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
    local keep=() pid
    for pid in "${PIDS[@]}"; do [[ $pid == "$PROXY_PID" ]] || keep+=("$pid"); done
    PIDS=("${keep[@]}")
}

# hold N [--request]: KiB per held connection (RSS while held minus before).
hold() {
    local n=$1 flag=${2:-} before during
    before=$(rss_kib)
    on_load "$LOADGEN" hold --target "127.0.0.1:$PORT_H1" --connections "$n" $flag --seconds 4 \
        >"$TMP/hold.out" 2>&1 &
    local hp=$!
    local i
    for ((i = 0; i < 1200; i++)); do
        grep -qs '^held' "$TMP/hold.out" && break
        kill -0 "$hp" 2>/dev/null || break
        sleep 0.05
    done
    grep -q '^held' "$TMP/hold.out" || { cat "$TMP/hold.out" >&2; die "hold $n $flag failed"; }
    # lifeguard lets an idle HTTP/1 connection's buffers go after 1 s.
    sleep 2
    during=$(rss_kib)
    wait "$hp" || true
    awk -v b="$before" -v d="$during" -v n="$n" 'BEGIN { printf "%.2f", (d - b) / n }'
    echo "$during" >"$TMP/hold.peak"
}

# wrk pass: CONNS PATH -> "req/s cpu_us_per_req requests"
wrk_pass() {
    local conns=$1 path=$2 t0 t1 out reqs
    t0=$(cpu_ticks)
    out=$(on_load wrk -t1 -c"$conns" -d"${DURATION}s" "http://127.0.0.1:$PORT_H1$path")
    t1=$(cpu_ticks)
    reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
    local rps
    rps=$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")
    awk -v a="$t0" -v b="$t1" -v r="$reqs" -v hz="$HZ" -v rps="$rps" \
        'BEGIN { printf "%.0f %.1f %d", rps, (b - a) / hz * 1e6 / r, r }'
}

h2_pass() { # -> cpu µs per request over h2c (10 connections x 10 streams)
    local t0 t1 out reqs n=$((DURATION * 20000))
    t0=$(cpu_ticks)
    local port=$PORT_H2
    # lifeguard tells HTTP/2 prior knowledge from HTTP/1.1 on one port.
    [[ $1 == lifeguard || $1 == before ]] && port=$PORT_H1
    out=$(on_load h2load -c10 -m10 -t1 -n"$n" "http://127.0.0.1:$port/" 2>&1)
    t1=$(cpu_ticks)
    reqs=$(awk '/^requests:/ { print $8 }' <<<"$out")
    [[ -n $reqs && $reqs -gt 0 ]] || { echo "-"; return; }
    awk -v a="$t0" -v b="$t1" -v r="$reqs" -v hz="$HZ" 'BEGIN { printf "%.1f", (b - a) / hz * 1e6 / r }'
}

open_p50() { # TARGET -> p50 in µs
    on_load "$LOADGEN" open --target "$1" --rate 2000 --duration "$DURATION" --connections 50 \
        --label x | awk '{ sub(/us/, "", $4); print $4 }'
}

declare -A R

measure() { # NAME
    local p=$1 v
    echo "compare: measuring $p" >&2
    start_proxy "$p"
    R[$p,rss_fresh]=$(awk -v k="$(rss_kib)" 'BEGIN { printf "%.1f", k / 1024 }')
    R[$p,never]=$(hold "$HOLD")
    local peak
    peak=$(cat "$TMP/hold.peak")
    sleep 10
    R[$p,after]=$(awk -v k="$(rss_kib)" -v p="$peak" 'BEGIN { printf "%.1f of %.1f", k / 1024, p / 1024 }')
    R[$p,keepalive]=$(hold "$HOLD" --request)
    read -r v R[$p,cpu50] _ <<<"$(wrk_pass 50 /)"
    R[$p,rps50]=$v
    read -r _ R[$p,cpu200] _ <<<"$(wrk_pass 200 /)"
    local p50
    p50=$(open_p50 "127.0.0.1:$PORT_H1")
    R[$p,added]=$((p50 - DIRECT_P50))
    R[$p,h2]=$(h2_pass "$p")
    local t0 t1 out reqs
    t0=$(cpu_ticks)
    out=$(on_load wrk -t1 -c4 -d"${DURATION}s" "http://127.0.0.1:$PORT_H1/source?bytes=1048576")
    t1=$(cpu_ticks)
    reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
    R[$p,mib]=$(awk -v a="$t0" -v b="$t1" -v r="$reqs" -v hz="$HZ" 'BEGIN { printf "%.0f", (b - a) / hz * 1e6 / r }')
    stop_proxy
}

start_upstream
read -r PORT_H1 PORT_H2 <<<"$(free_ports)"
write_configs
DIRECT_P50=$(open_p50 "$UPSTREAM")

echo "lifeguard vs peers — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs" \
    "($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), Linux $(uname -r)," \
    "load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "proxy pinned to CPU $PROXY_CPU; upstream (loadgen, hyper, 128-byte body) and clients on CPU $LOAD_CPU;" \
    "${DURATION}s per pass; nginx $($NGINX -v 2>&1 | sed 's/.*\///'), HAProxy $($HAPROXY -v | awk 'NR==1 { print $3 }')"
echo "direct to the upstream: open-loop p50 at 2k req/s ${DIRECT_P50} µs"

for p in $PROXIES; do measure "$p"; done

row() { # LABEL KEY
    printf '%-52s' "$1"
    local p
    for p in $PROXIES; do printf ' %18s' "${R[$p,$2]}"; done
    printf '\n'
}
echo
printf '%-52s' "figure"
for p in $PROXIES; do printf ' %18s' "$p"; done
printf '\n%s\n' "$(printf -- '-%.0s' $(seq 1 $((52 + 19 * $(wc -w <<<"$PROXIES")))))"
row "CPU µs/request, saturated (50 conns)" cpu50
row "CPU µs/request, 200 conns" cpu200
row "req/s, 50 conns, one proxy core" rps50
row "added p50 latency at 2k req/s open loop (µs)" added
row "h2c CPU µs/request (10 conns x 10 streams)" h2
row "1 MiB responses, CPU µs/MiB" mib
row "RSS KiB per idle keep-alive conn (one request)" keepalive
row "RSS KiB per never-used conn ($HOLD held)" never
row "RSS MiB 10 s after those closed (of peak)" after
row "RSS MiB idle, fresh (all processes)" rss_fresh
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
