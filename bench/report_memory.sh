#!/usr/bin/env bash
# Peak memory and time of the incident report (--report) of a large hunt,
# against the same hunt writing only its summary, and of `tokenward report`
# making the page again from the saved outputs; checks the page made again
# is the hunt's.
#
# The input is generated sign-ins (bench/gen_matrix.py, a tenant
# simulation) hunted with the SigmaHQ cloud rules, one of which fires on
# most sign-ins: the findings number about 14 % of the sign-ins.
#
# Usage: [BIN=...] bench/report_memory.sh [SIGNIN_MB] [RUNS]
#   SIGNIN_MB  sign-ins generated (default 4000: 568,050 findings)
#   RUNS       runs of each, alternated (default 2)
#   BIN        tokenward binary (default target/release/tokenward; this script never builds)
# Sign-ins go to /work/bench-data/signin-<SIGNIN_MB> (kept for the next run).
# Exits 1 when a page made again differs from the hunt's.
set -euo pipefail
cd "$(dirname "$0")/.."
SIGNIN_MB=${1:-4000}
RUNS=${2:-2}
BIN=${BIN:-target/release/tokenward}
[ -x "$BIN" ] || { echo "report_memory.sh: no tokenward binary at $BIN (set BIN=...)" >&2; exit 2; }
DATA=/work/bench-data/signin-$SIGNIN_MB
if [ ! -e "$DATA.done" ]; then
    rm -rf "$DATA"
    python3 bench/gen_matrix.py signin "$SIGNIN_MB" "$DATA" --no-twin >&2
    touch "$DATA.done"
fi
RULES=(--rules tests/fixtures/sigma/rules --rules rules)
WORK=$(mktemp -d /tmp/tokenward-report.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
echo "# report memory: $BIN, $DATA, load $(cut -d' ' -f1 /proc/loadavg)"
printf '%-16s %-4s %8s %8s %10s\n' what run wall_s cpu_s rss_mib
measure() { # what run command...
    local what=$1 run=$2
    shift 2
    /usr/bin/time -f "%e %U %S %M" -o "$WORK/time" "$@"
    read -r wall user sys rss <"$WORK/time"
    printf '%-16s %-4s %8s %8s %10s\n' "$what" "$run" "$wall" \
        "$(python3 -c "print(f'{$user + $sys:.2f}')")" "$((rss / 1024))"
}
status=0
for run in $(seq "$RUNS"); do
    measure summary "$run" "$BIN" hunt "$DATA" -q "${RULES[@]}" --output-format jsonl \
        -o /dev/null --summary-json "$WORK/s.json"
    measure "summary+report" "$run" "$BIN" hunt "$DATA" -q "${RULES[@]}" --output-format jsonl \
        -o "$WORK/f.jsonl" --summary-json "$WORK/s.json" --report "$WORK/hunt.html"
    measure "tokenward report" "$run" "$BIN" report --findings "$WORK/f.jsonl" \
        --summary "$WORK/s.json" -o "$WORK/again.html"
    if ! cmp -s "$WORK/hunt.html" "$WORK/again.html"; then
        echo "run $run: the page made again differs from the hunt's" >&2
        status=1
    fi
done
echo "findings: $(wc -l <"$WORK/f.jsonl"), page: $(stat -c %s "$WORK/hunt.html") bytes"
[ "$status" = 0 ] && echo "the page made again is the hunt's in every run"
exit "$status"
