#!/usr/bin/env bash
# A/B timing of two tokenward builds on one input: the builds run
# alternately (old, new, old, new, ...), so a machine that speeds up or
# slows down during the runs weighs on both alike. A change of a few per
# cent is only visible this way on a shared machine; one run of each, or
# all of one build first, measures the neighbours.
#
# Prints every run (wall seconds, CPU seconds = user + sys, peak RSS) and,
# per build, the best and median CPU seconds and wall seconds.
#
# Usage: bench/ab.sh OLD_BIN NEW_BIN INPUT [RUNS] [builtin|sigma]
#   RUNS     runs of each build (default 5)
#   sigma    add the SigmaHQ cloud rules and rules/ (as bench/matrix.sh does)
# Findings go to a temporary directory; compare outputs with
# bench/same_outputs.sh, not here.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 3 ] || [ ! -x "$1" ] || [ ! -x "$2" ] || [ ! -e "$3" ]; then
    echo "usage: $0 OLD_BIN NEW_BIN INPUT [RUNS] [builtin|sigma]" >&2
    exit 2
fi
OLD=$1 NEW=$2 INPUT=$3 RUNS=${4:-5} CONFIG=${5:-builtin}
extra=()
case $CONFIG in
    builtin) ;;
    sigma) extra=(--rules tests/fixtures/sigma/rules --rules rules) ;;
    *) echo "configuration must be builtin or sigma, not $CONFIG" >&2; exit 2 ;;
esac
WORK=$(mktemp -d /tmp/tokenward-ab.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
for run in $(seq "$RUNS"); do
    for build in old new; do
        bin=$OLD
        [ "$build" = new ] && bin=$NEW
        /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" \
            "$bin" hunt "$INPUT" -q --output-format jsonl -o "$WORK/findings.jsonl" \
            --summary-json "$WORK/summary.json" "${extra[@]}" >/dev/null || {
            status=$?
            # 1 is "findings found" only with --fail-on-findings; any
            # status here is a failed run.
            echo "$build run $run: exit status $status" >&2
            exit 1
        }
        read -r wall user sys rss <"$WORK/time"
        cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
        echo "$build run $run: wall ${wall} s, CPU ${cpu} s, peak RSS $((rss / 1024)) MiB"
        echo "$build $wall $cpu" >>"$WORK/all"
    done
done
# stats COLUMN BUILD: the best and the median of one column of a build's runs.
stats() {
    awk -v b="$2" -v c="$1" '$1 == b { print $c }' "$WORK/all" | sort -g |
        awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "best %.2f median %.2f s", v[1], m }'
}
for build in old new; do
    echo "$build: CPU $(stats 3 "$build"); wall $(stats 2 "$build")"
done
