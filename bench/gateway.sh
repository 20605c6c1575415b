#!/usr/bin/env bash
# Load benchmark of `tokenward gateway` on loopback, with wrk:
#   (a) the upstream (nginx `return 200`) directly,
#   (b) nginx as a plain reverse proxy in front of it,
#   (c) tokenward gateway with a valid token (verdict cache warm),
#   (d) tokenward gateway under a flood of distinct garbage tokens,
# each at THREADS/CONNS for DURATION (throughput, p50, p99), then (a)-(c)
# again at LAT_CONNS connections to read the latency the proxy adds when
# the machine is not saturated. Gateway RSS is read before and after two
# rounds of (d). Everything binds 127.0.0.1; nothing leaves the machine.
#
# Usage: bench/gateway.sh            (installs wrk and nginx with apt if missing)
# Knobs: DURATION=10s CONNS=32 THREADS=2 LAT_CONNS=4 BASE_PORT=18080
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
LAT_CONNS=${LAT_CONNS:-4}
BASE_PORT=${BASE_PORT:-18080}
UP=$BASE_PORT
NGX=$((BASE_PORT + 1))
GW=$((BASE_PORT + 2))
ADMIN=$((BASE_PORT + 3))

if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
    echo "== installing wrk and nginx" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx >&2
fi
NGINX=$(command -v nginx)

echo "== building (release)" >&2
cargo build --release -q -p tokenward --bin tokenward >&2
cargo build --release -q -p tokenward-gateway --example bench_setup >&2
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

WORK=$(mktemp -d /tmp/tokenward-gw-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

"$TARGET/release/examples/bench_setup" "$WORK"
TOKEN=$(cat "$WORK/token.txt")

mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    client_body_temp_path $WORK/nginx/body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    keepalive_requests 1000000;
    # Large enough for the bearer token in (a) and (b).
    large_client_header_buffers 4 16k;
    upstream app { server 127.0.0.1:$UP; keepalive 128; }
    server {
        listen 127.0.0.1:$UP;
        access_log off;
        location / { return 200 "ok\n"; }
    }
    # (b): a plain reverse proxy, logging each request as nginx does by
    # default (the gateway logs every request too).
    server {
        listen 127.0.0.1:$NGX;
        access_log $WORK/nginx/access.log;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" &
PIDS+=($!)

"$TARGET/release/tokenward" gateway --policy "$WORK/policy.toml" \
    --listen "127.0.0.1:$GW" --admin-listen "127.0.0.1:$ADMIN" \
    --upstream "http://127.0.0.1:$UP" --access-log "$WORK/access.jsonl" --quiet &
GW_PID=$!
PIDS+=("$GW_PID")

wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "port $1 never opened" >&2
    exit 1
}
wait_port "$UP"
wait_port "$NGX"
wait_port "$GW"

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$GW_PID/status"; }

# run LABEL CONNS URL [wrk args...] -> prints "LABEL rps p50 p99 errors non2xx"
run() {
    local label=$1 conns=$2 url=$3
    shift 3
    local out
    out=$(REPORT_LUA="$ROOT/bench/gateway-report.lua" FORGE_LUA="$WORK/forge.lua" \
        wrk -t"$THREADS" -c"$conns" -d"$DURATION" "$@" "$url")
    local line
    line=$(grep '^RESULT' <<<"$out")
    echo "$label $(sed -E 's/RESULT rps=([0-9.]+) p50_ms=([0-9.]+) p99_ms=([0-9.]+) errors=([0-9]+) non2xx=([0-9]+).*/\1 \2 \3 \4 \5/' <<<"$line")"
}

AUTH="Authorization: Bearer $TOKEN"
REPORT=(-s "$ROOT/bench/gateway-report.lua")
# Warm-up: the gateway's verdict cache and connection pools, nginx's too.
wrk -t1 -c4 -d2s -H "$AUTH" "http://127.0.0.1:$GW/orders" >/dev/null
wrk -t1 -c4 -d2s -H "$AUTH" "http://127.0.0.1:$NGX/orders" >/dev/null

RESULTS=()
echo "== throughput, $CONNS connections, $DURATION each" >&2
RESULTS+=("$(run a-direct "$CONNS" "http://127.0.0.1:$UP/orders" -H "$AUTH" "${REPORT[@]}")")
RESULTS+=("$(run b-nginx-proxy "$CONNS" "http://127.0.0.1:$NGX/orders" -H "$AUTH" "${REPORT[@]}")")
RESULTS+=("$(run c-tokenward-valid "$CONNS" "http://127.0.0.1:$GW/orders" -H "$AUTH" "${REPORT[@]}")")
echo "== latency, $LAT_CONNS connections" >&2
RESULTS+=("$(run a-direct@$LAT_CONNS "$LAT_CONNS" "http://127.0.0.1:$UP/orders" -H "$AUTH" "${REPORT[@]}")")
RESULTS+=("$(run b-nginx-proxy@$LAT_CONNS "$LAT_CONNS" "http://127.0.0.1:$NGX/orders" -H "$AUTH" "${REPORT[@]}")")
RESULTS+=("$(run c-tokenward-valid@$LAT_CONNS "$LAT_CONNS" "http://127.0.0.1:$GW/orders" -H "$AUTH" "${REPORT[@]}")")
echo "== garbage-token flood, twice" >&2
RSS0=$(rss_kib)
RESULTS+=("$(run d-tokenward-garbage "$CONNS" "http://127.0.0.1:$GW/orders" -s "$ROOT/bench/gateway-garbage.lua")")
RSS1=$(rss_kib)
RESULTS+=("$(run d-tokenward-garbage-2 "$CONNS" "http://127.0.0.1:$GW/orders" -s "$ROOT/bench/gateway-garbage.lua")")
RSS2=$(rss_kib)

METRICS=$(exec 3<>"/dev/tcp/127.0.0.1/$ADMIN" && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3)
LOG_LINES=$(wc -l <"$WORK/access.jsonl")

echo
echo "machine: $(nproc) cores, $(uname -sr); wrk -t$THREADS, $DURATION per run"
echo
echo "| run | conns | requests/s | p50 ms | p99 ms | socket errors | non-2xx |"
echo "|---|---|---|---|---|---|---|"
for r in "${RESULTS[@]}"; do
    read -r label rps p50 p99 err non2xx <<<"$r"
    conns=$CONNS
    [[ $label == *@* ]] && conns=${label#*@}
    echo "| ${label%@*} | $conns | $rps | $p50 | $p99 | $err | $non2xx |"
done
echo
rps() { for r in "${RESULTS[@]}"; do read -r l v _ <<<"$r"; [[ $l == "$1" ]] && echo "$v"; done; }
p99() { for r in "${RESULTS[@]}"; do read -r l _ _ v _ <<<"$r"; [[ $l == "$1" ]] && echo "$v"; done; }
awk -v c="$(rps c-tokenward-valid)" -v b="$(rps b-nginx-proxy)" \
    'BEGIN { printf "(c)/(b) throughput: %.2f (target >= 0.80)\n", c / b }'
awk -v c="$(p99 c-tokenward-valid@$LAT_CONNS)" -v a="$(p99 a-direct@$LAT_CONNS)" \
    'BEGIN { printf "p99 added by the gateway at '"$LAT_CONNS"' connections: %.3f ms (target < 1 ms)\n", c - a }'
echo "gateway RSS: before (d) ${RSS0} KiB, after (d) ${RSS1} KiB, after second (d) ${RSS2} KiB"
echo "access log lines written: $LOG_LINES"
grep -E '^tokenward_gateway_(requests_total|verdict_cache_entries|rejections_total\{reason="(signature-invalid|kid-unknown|malformed)"\})' <<<"$METRICS" || true
