#!/usr/bin/env bash
# Peak memory and time of the sign-in index at several budgets
# (--signin-index-memory), on generated sign-ins plus UAL records whose
# tokens are judged against them, and a check that the findings do not
# depend on where the index is kept.
#
# The sign-ins come from bench/gen_matrix.py (a tenant simulation, not
# written for the index); the UAL records from its `ual` shape carry
# token ids and sessions that no sign-in of the sign-in set issued, so
# every token-bearing record is looked up and many are findings.
#
# Usage: [BIN=...] bench/index_memory.sh [SIGNIN_MB] [UAL_MB] [BUDGETS] [RUNS]
#   SIGNIN_MB  sign-ins generated (default 4000; 4 GB is about 880,000)
#   UAL_MB     UAL records generated (default 500)
#   BUDGETS    --signin-index-memory values in MiB (default "32 8 1 0")
#   RUNS       runs per budget, alternated (default 2)
#   BIN        tokenward binary (default target/release/tokenward; this script never builds)
# Data goes to /work/bench-data/index-<SIGNIN_MB>-<UAL_MB> (kept for the next run).
# Prints wall seconds, CPU seconds and peak RSS per run, and exits 1 when
# the findings of any run differ from those of the first.
set -euo pipefail
cd "$(dirname "$0")/.."
SIGNIN_MB=${1:-4000}
UAL_MB=${2:-500}
BUDGETS=${3:-"32 8 1 0"}
RUNS=${4:-2}
BIN=${BIN:-target/release/tokenward}
[ -x "$BIN" ] || { echo "index_memory.sh: no tokenward binary at $BIN (set BIN=...)" >&2; exit 2; }
DATA=/work/bench-data/index-$SIGNIN_MB-$UAL_MB
if [ ! -e "$DATA/.done" ]; then
    rm -rf "$DATA"
    mkdir -p "$DATA"
    python3 bench/gen_matrix.py signin "$SIGNIN_MB" "$DATA/signin" --no-twin >&2
    python3 bench/gen_matrix.py ual "$UAL_MB" "$DATA/ual" --no-twin >&2
    touch "$DATA/.done"
fi
WORK=$(mktemp -d /tmp/tokenward-index.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
echo "# sign-in index memory: $BIN, $DATA, load $(cut -d' ' -f1 /proc/loadavg)"
printf '%-8s %-4s %8s %8s %10s %9s\n' budget run wall_s cpu_s rss_mib findings
status=0
first=""
for run in $(seq "$RUNS"); do
    for budget in $BUDGETS; do
        out=$WORK/$budget-$run.jsonl
        /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" \
            "$BIN" hunt "$DATA/signin" "$DATA/ual" -q --output-format jsonl -o "$out" \
            --signin-index-memory "$budget"
        read -r wall user sys rss <"$WORK/time"
        cpu=$(python3 -c "print(f'{$user + $sys:.2f}')")
        printf '%-8s %-4s %8s %8s %10s %9s\n' "$budget" "$run" "$wall" "$cpu" "$((rss / 1024))" "$(wc -l <"$out")"
        if [ -z "$first" ]; then
            first=$out
        elif ! cmp -s "$first" "$out"; then
            echo "findings of budget $budget run $run differ from the first run's" >&2
            status=1
        fi
    done
done
[ "$status" = 0 ] && echo "findings identical in every run"
exit "$status"
