#!/usr/bin/env bash
# Load benchmark of `tokenward gateway` on loopback, with wrk:
#   (a) the upstream (nginx `return 200`) directly,
#   (b) nginx as a plain reverse proxy in front of it,
#   (c) tokenward gateway with a valid token (verdict cache warm),
#   (d) tokenward gateway under a flood of distinct garbage tokens,
#   (e) nginx with auth_request to tokenward in authz mode (--authz nginx),
#       the configuration of docs/examples/nginx-authz.conf,
# (a)-(c) and (e) at CONNS connections (throughput, p50, p99) and at LAT_CONNS
# connections (the latency the proxy adds when the machine is not
# saturated), in ROUNDS interleaved rounds; then (d) FLOOD_ROUNDS times at
# CONNS, with the gateway's RSS read before and after each (medians of all
# rounds in the table). Everything binds
# 127.0.0.1; nothing leaves the machine.
#
# Usage: bench/gateway.sh            (installs wrk and nginx with apt if missing)
# Knobs: BIN=tokenward binary (default: this checkout's release build) DURATION=5s ROUNDS=3 FLOOD_ROUNDS=3 CONNS=32 THREADS=2 LAT_CONNS=4 BASE_PORT=18080
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
FLOOD_ROUNDS=${FLOOD_ROUNDS:-3}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
LAT_CONNS=${LAT_CONNS:-4}
BASE_PORT=${BASE_PORT:-18080}
UP=$BASE_PORT
NGX=$((BASE_PORT + 1))
GW=$((BASE_PORT + 2))
ADMIN=$((BASE_PORT + 3))
AUTHZ=$((BASE_PORT + 4))
NGX_AUTHZ=$((BASE_PORT + 5))

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
# The binary under test: BIN=path (a profile-guided build, say) or this
# checkout's release build.
GATEWAY_BIN=${BIN:-$TARGET/release/tokenward}

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
    # (e): nginx asking tokenward (authz mode) before proxying.
    upstream tokenward_authz { server 127.0.0.1:$AUTHZ; keepalive 64; }
    server {
        listen 127.0.0.1:$NGX_AUTHZ;
        access_log $WORK/nginx/access-authz.log;
        location = /_tokenward {
            internal;
            proxy_pass http://tokenward_authz;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI \$request_uri;
            proxy_set_header X-Original-Method \$request_method;
        }
        location / {
            auth_request /_tokenward;
            auth_request_set \$tw_sub \$upstream_http_x_tokenward_sub;
            proxy_set_header X-Tokenward-Sub \$tw_sub;
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
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

"$GATEWAY_BIN" gateway --policy "$WORK/policy.toml" \
    --listen "127.0.0.1:$GW" --admin-listen "127.0.0.1:$ADMIN" \
    --upstream "http://127.0.0.1:$UP" --access-log "$WORK/access.jsonl" --quiet &
GW_PID=$!
PIDS+=("$GW_PID")
"$GATEWAY_BIN" gateway --policy "$WORK/policy.toml" \
    --listen "127.0.0.1:$AUTHZ" --authz nginx --access-log "$WORK/access-authz.jsonl" --quiet &
PIDS+=($!)

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
wait_port "$AUTHZ"
wait_port "$NGX_AUTHZ"

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
wrk -t1 -c4 -d2s -H "$AUTH" "http://127.0.0.1:$NGX_AUTHZ/orders" >/dev/null

# The machine is shared, so throughput drifts from minute to minute: (a), (b)
# and (c) are run in interleaved rounds and each figure is the median of the
# rounds, and (c)/(b) is also given per round (the same minute for both).
RESULTS=()
for round in $(seq "$ROUNDS"); do
    echo "== round $round/$ROUNDS: $CONNS and $LAT_CONNS connections, $DURATION each" >&2
    for conns in "$CONNS" "$LAT_CONNS"; do
        RESULTS+=("$(run "a-direct@$conns" "$conns" "http://127.0.0.1:$UP/orders" -H "$AUTH" "${REPORT[@]}")")
        RESULTS+=("$(run "b-nginx-proxy@$conns" "$conns" "http://127.0.0.1:$NGX/orders" -H "$AUTH" "${REPORT[@]}")")
        n0=$(wc -l <"$WORK/access.jsonl")
        RESULTS+=("$(run "c-tokenward-valid@$conns" "$conns" "http://127.0.0.1:$GW/orders" -H "$AUTH" "${REPORT[@]}")")
        RESULTS+=("$(run "e-nginx-authz-tokenward@$conns" "$conns" "http://127.0.0.1:$NGX_AUTHZ/orders" -H "$AUTH" "${REPORT[@]}")")
        if [[ $conns == "$LAT_CONNS" ]]; then
            # The gateway's own view: latency_ms of this run's log lines
            # (request in to response headers out, upstream included),
            # which the load generator's scheduling noise does not reach.
            sleep 0.2
            tail -n +"$((n0 + 1))" "$WORK/access.jsonl" | grep -o '"latency_ms":[0-9.]*' | cut -d: -f2 >>"$WORK/latency.txt"
        fi
    done
done
echo "== garbage-token flood, $FLOOD_ROUNDS times" >&2
RSS=("$(rss_kib)")
for i in $(seq "$FLOOD_ROUNDS"); do
    RESULTS+=("$(run "d-tokenward-garbage@$CONNS" "$CONNS" "http://127.0.0.1:$GW/orders" -s "$ROOT/bench/gateway-garbage.lua")")
    RSS+=("$(rss_kib)")
done

METRICS=$(exec 3<>"/dev/tcp/127.0.0.1/$ADMIN" && printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3 && cat <&3)
LOG_LINES=$(wc -l <"$WORK/access.jsonl")

# field LABEL N: the N-th field (2 rps, 3 p50, 4 p99, 5 errors, 6 non-2xx)
# of every result with that label, one per line.
field() { for r in "${RESULTS[@]}"; do read -r -a f <<<"$r"; [[ ${f[0]} == "$1" ]] && echo "${f[$2 - 1]}"; done; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
sum() { awk '{ s += $1 } END { print s + 0 }'; }

echo
echo "machine: $(nproc) cores, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg); wrk -t$THREADS, $DURATION per run, $ROUNDS interleaved rounds (medians)"
echo
echo "| run | conns | requests/s | p50 ms | p99 ms | socket errors | non-2xx |"
echo "|---|---|---|---|---|---|---|"
for label in "a-direct@$CONNS" "b-nginx-proxy@$CONNS" "c-tokenward-valid@$CONNS" "e-nginx-authz-tokenward@$CONNS" \
    "a-direct@$LAT_CONNS" "b-nginx-proxy@$LAT_CONNS" "c-tokenward-valid@$LAT_CONNS" "e-nginx-authz-tokenward@$LAT_CONNS" \
    "d-tokenward-garbage@$CONNS"; do
    printf '| %s | %s | %.0f | %s | %s | %s | %s |\n' "${label%@*}" "${label#*@}" \
        "$(field "$label" 2 | median)" "$(field "$label" 3 | median)" "$(field "$label" 4 | median)" \
        "$(field "$label" 5 | sum)" "$(field "$label" 6 | sum)"
done
echo
RATIOS=$(paste <(field "c-tokenward-valid@$CONNS" 2) <(field "b-nginx-proxy@$CONNS" 2) | awk '{ printf "%.2f\n", $1 / $2 }')
echo "(c)/(b) throughput per round: $(tr '\n' ' ' <<<"$RATIOS")-> median $(median <<<"$RATIOS") (target >= 0.80)"
RATIOS_LAT=$(paste <(field "c-tokenward-valid@$LAT_CONNS" 2) <(field "b-nginx-proxy@$LAT_CONNS" 2) | awk '{ printf "%.2f\n", $1 / $2 }')
echo "(c)/(b) throughput per round at $LAT_CONNS connections: $(tr '\n' ' ' <<<"$RATIOS_LAT")-> median $(median <<<"$RATIOS_LAT")"
RATIOS_E=$(paste <(field "e-nginx-authz-tokenward@$CONNS" 2) <(field "b-nginx-proxy@$CONNS" 2) | awk '{ printf "%.2f\n", $1 / $2 }')
echo "(e)/(b) throughput per round (nginx + authz sub-request vs nginx alone): $(tr '\n' ' ' <<<"$RATIOS_E")-> median $(median <<<"$RATIOS_E")"
for q in 3 4; do
    name=$([[ $q == 3 ]] && echo p50 || echo p99)
    added() { paste <(field "$1@$LAT_CONNS" "$q") <(field "a-direct@$LAT_CONNS" "$q") | awk '{ printf "%.3f\n", $1 - $2 }' | median; }
    echo "$name added at $LAT_CONNS connections (median of rounds, vs direct): tokenward $(added c-tokenward-valid) ms, nginx $(added b-nginx-proxy) ms, nginx+authz $(added e-nginx-authz-tokenward) ms (target < 1 ms)"
done
pct() { sort -g "$WORK/latency.txt" | awk -v p="$1" '{ v[NR] = $1 } END { i = int(NR * p / 100); if (i < 1) i = 1; print v[i] }'; }
echo "in-gateway latency at $LAT_CONNS connections (access log latency_ms, upstream round trip included, $(wc -l <"$WORK/latency.txt") requests): p50 $(pct 50) ms, p99 $(pct 99) ms, p99.9 $(pct 99.9) ms"
echo "gateway RSS (KiB) before (d) and after each of its $FLOOD_ROUNDS rounds: ${RSS[*]}"
echo "access log lines written: $LOG_LINES"
grep -E '^tokenward_gateway_(requests_total|verdict_cache_entries|rejections_total\{reason="(signature-invalid|kid-unknown|malformed)"\})' <<<"$METRICS" || true
