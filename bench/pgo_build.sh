#!/usr/bin/env bash
# Builds tokenward with profile-guided optimisation (PGO): an instrumented
# release build runs hunts over generated training data and the bundled
# examples, and the release build is then compiled again with the profile
# those runs wrote. rustc's (LLVM's) own feature; no code changes.
#
# The training data is never the benchmark's: bench/gen_matrix.py writes
# the shapes with --seed=SEED (other tenants, users and records than the
# matrix's seed 0), TRAIN_MB each, plus the real samples in
# tests/fixtures/logs and examples/storm-0558. Each is hunted with the
# built-in detections and with the SigmaHQ cloud rules (and rules/), as the
# matrix runs them; `verify` runs over the example's tokens; and the
# gateway, as a proxy and as nginx's authorization service, takes valid,
# forged (wrong signature, unknown kid), malformed and missing tokens on
# loopback (bench/pgo_gateway_training.py; SIGTERM shuts it down, so its
# profile is written).
#
# Usage: bench/pgo_build.sh [OUT_BIN]     (default target/pgo/tokenward)
# Knobs: TRAIN_SHAPES="signin ual ..." (default: all nine gen_matrix shapes)
#        TRAIN_MB=40 SEED=1000 PGO_TARGET=target/pgo (cargo target dirs under it)
# Needs the toolchain's llvm-profdata: rustup component add llvm-tools
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-target/pgo/tokenward}
TRAIN_SHAPES=${TRAIN_SHAPES:-signin ual purview-csv gzip mail signin-envelope ual-powershell la-csv entra-audit}
TRAIN_MB=${TRAIN_MB:-40}
SEED=${SEED:-1000}
PGO_TARGET=${PGO_TARGET:-target/pgo}
if [ "$SEED" = 0 ]; then
    echo "SEED=0 is the benchmark's own data; train on another seed" >&2
    exit 2
fi

sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
PROFDATA=$sysroot/lib/rustlib/$host/bin/llvm-profdata
if [ ! -x "$PROFDATA" ]; then
    echo "no llvm-profdata in $sysroot: run 'rustup component add llvm-tools'" >&2
    exit 2
fi

if [ -n "${CARGO_ENCODED_RUSTFLAGS:-}" ]; then
    # cargo would use it and ignore RUSTFLAGS, which carries the profile.
    echo "unset CARGO_ENCODED_RUSTFLAGS (put its flags in RUSTFLAGS)" >&2
    exit 2
fi
# The user's own flags, kept in both builds (and the plain build to
# compare with should have them too).
USER_FLAGS=${RUSTFLAGS:-}

WORK=$(mktemp -d /tmp/tokenward-pgo.XXXXXX)
BACKGROUND=()
cleanup() {
    for p in ${BACKGROUND[@]+"${BACKGROUND[@]}"}; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/data" "$(dirname "$OUT")" "$PGO_TARGET"
# A fixed directory, so that the instrumented build's flags stay the same
# and cargo reuses it; emptied before each training.
PROFILES=$(cd "$PGO_TARGET" && pwd)/profiles
rm -rf "$PROFILES"

echo "== instrumented build" >&2
RUSTFLAGS="$USER_FLAGS -Cprofile-generate=$PROFILES" CARGO_TARGET_DIR="$PGO_TARGET/instrumented" \
    cargo build --release --locked -q --bin tokenward
TRAINEE=$PGO_TARGET/instrumented/release/tokenward

echo "== training data (seed $SEED, $TRAIN_MB MB a shape)" >&2
for shape in $TRAIN_SHAPES; do
    mb=$TRAIN_MB
    # hunt_gen.py writes ~63 MB of sign-ins before any mailbox record.
    if [ "$shape" = mail ] && [ "$mb" -lt 120 ]; then mb=120; fi
    python3 bench/gen_matrix.py "$shape" "$mb" "$WORK/data/$shape" --no-twin --seed="$SEED" >&2
done

echo "== training runs" >&2
SIGMA=(--rules tests/fixtures/sigma/rules --rules rules)
train() {
    # Exit status 1 means findings (README, Exit codes); anything else is
    # a failed run, whose profile would not be what hunts do.
    local status=0
    "$TRAINEE" "$@" >/dev/null 2>"$WORK/stderr.txt" || status=$?
    if [ "$status" -gt 1 ]; then
        echo "training run failed ($status): tokenward $*" >&2
        cat "$WORK/stderr.txt" >&2
        exit 1
    fi
}
for input in "$WORK"/data/* tests/fixtures/logs examples/storm-0558/logs; do
    for rules in builtin sigma; do
        extra=()
        [ "$rules" = sigma ] && extra=("${SIGMA[@]}")
        train hunt "$input" -q --output-format jsonl -o "$WORK/findings.jsonl" \
            --summary-json "$WORK/summary.json" ${extra[@]+"${extra[@]}"}
    done
done
train hunt examples/storm-0558/logs -q --output-format csv -o "$WORK/findings.csv" \
    --report "$WORK/report.html" "${SIGMA[@]}"
train verify --policy examples/storm-0558/policy.toml --now 2023-06-15T08:05:00Z \
    --tokens examples/storm-0558/tokens.txt

echo "== gateway training" >&2
# Plain, in a target directory of its own: it only writes the policy, key
# set and token.
CARGO_TARGET_DIR="$PGO_TARGET/plain" cargo build --release --locked -q -p tokenward-gateway --example bench_setup
GW=$WORK/gw
mkdir -p "$GW"
"$PGO_TARGET/plain/release/examples/bench_setup" "$GW"
# Three free loopback ports: upstream, proxy, authorization service.
read -r UP_PORT PROXY_PORT AUTHZ_PORT < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
python3 bench/pgo_gateway_training.py upstream "$UP_PORT" &
UPSTREAM_PID=$!
BACKGROUND+=("$UPSTREAM_PID")
"$TRAINEE" gateway --policy "$GW/policy.toml" --listen "127.0.0.1:$PROXY_PORT" \
    --upstream "http://127.0.0.1:$UP_PORT" --access-log "$GW/access.jsonl" --quiet &
PROXY_PID=$!
BACKGROUND+=("$PROXY_PID")
"$TRAINEE" gateway --policy "$GW/policy.toml" --listen "127.0.0.1:$AUTHZ_PORT" \
    --authz nginx --access-log "$GW/access-authz.jsonl" --quiet &
AUTHZ_PID=$!
BACKGROUND+=("$AUTHZ_PID")
status=0
python3 bench/pgo_gateway_training.py client "$GW/token.txt" "$UP_PORT" "$PROXY_PORT" "$AUTHZ_PORT" \
    || status=$?
# SIGTERM shuts the gateway down, and its profile is written at exit; a
# gateway that is gone already, or exits with an error, failed training.
kill -TERM "$PROXY_PID" "$AUTHZ_PID" 2>/dev/null || status=1
wait "$PROXY_PID" || status=1
wait "$AUTHZ_PID" || status=1
kill "$UPSTREAM_PID" 2>/dev/null || true
wait "$UPSTREAM_PID" 2>/dev/null || true
BACKGROUND=()
if [ "$status" != 0 ]; then
    echo "gateway training failed" >&2
    exit 1
fi

echo "== optimised build" >&2
"$PROFDATA" merge -o "$WORK/merged.profdata" "$PROFILES"
# Named by its contents: cargo sees the flags, not the file, so another
# profile must be another name (and the same one reuses the build).
PROFILE=$(cd "$PGO_TARGET" && pwd)/profile-$(sha256sum "$WORK/merged.profdata" | cut -c1-16).profdata
cp "$WORK/merged.profdata" "$PROFILE"
RUSTFLAGS="$USER_FLAGS -Cprofile-use=$PROFILE" CARGO_TARGET_DIR="$PGO_TARGET/optimised" \
    cargo build --release --locked -q --bin tokenward
cp "$PGO_TARGET/optimised/release/tokenward" "$OUT"
echo "wrote $OUT" >&2
