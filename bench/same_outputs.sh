#!/usr/bin/env bash
# Checks that a change to the engine changed no output: runs two tokenward
# builds on the same inputs, with the built-in detections alone and with the
# SigmaHQ cloud rules and rules/, and compares the exit status, the JSONL and
# CSV findings and the summary (`--summary-json`, run time removed) byte for
# byte. A speed change is kept only when this says "same" everywhere (or the
# difference is a named bug fix).
#
# Usage: bench/same_outputs.sh OLD_BIN NEW_BIN [INPUT...]
#   INPUT  files or directories; default: examples/storm-0558/logs,
#          tests/fixtures/logs, and the signin, ual, purview-csv, gzip,
#          mail, ual-powershell, la-csv and entra-audit shapes of /work/bench-data/matrix-100
#          when they exist (GEN_ONLY=1 bench/matrix.sh 100 makes them;
#          signin-envelope holds the records of signin)
# Exit status: 0 when every output is the same, 1 on any difference, 2 on a
# usage error.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ] || [ ! -x "$1" ] || [ ! -x "$2" ]; then
    echo "usage: $0 OLD_BIN NEW_BIN [INPUT...]" >&2
    exit 2
fi
OLD=$1 NEW=$2
shift 2
inputs=("$@")
if [ ${#inputs[@]} -eq 0 ]; then
    inputs=(examples/storm-0558/logs tests/fixtures/logs)
    for shape in signin ual purview-csv gzip mail ual-powershell la-csv entra-audit; do
        [ -d "/work/bench-data/matrix-100/$shape" ] && inputs+=("/work/bench-data/matrix-100/$shape")
    done
fi
WORK=$(mktemp -d /tmp/tokenward-same.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
status=0
for input in "${inputs[@]}"; do
    for config in builtin sigma; do
        extra=()
        [ "$config" = sigma ] && extra=(--rules tests/fixtures/sigma/rules --rules rules)
        for build in old new; do
            bin=$OLD
            [ "$build" = new ] && bin=$NEW
            out=$WORK/$build
            rm -rf "$out" && mkdir -p "$out"
            "$bin" hunt "$input" -q --output-format jsonl -o "$out/findings.jsonl" \
                --summary-json "$out/summary.json" "${extra[@]}" >/dev/null 2>"$out/stderr"
            echo "exit status $?" >"$out/status"
            "$bin" hunt "$input" -q --output-format csv -o "$out/findings.csv" \
                "${extra[@]}" >/dev/null 2>/dev/null
            python3 - "$out/summary.json" >"$out/summary-timeless.json" <<'PY'
import json, sys
try:
    doc = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    print("no summary")
    sys.exit(0)
doc.pop("seconds", None)
print(json.dumps(doc, sort_keys=True, indent=1))
PY
        done
        differing=()
        for f in status findings.jsonl findings.csv summary-timeless.json; do
            cmp -s "$WORK/old/$f" "$WORK/new/$f" || differing+=("$f")
        done
        if [ ${#differing[@]} -eq 0 ]; then
            echo "same       $input, $config ($(wc -l <"$WORK/new/findings.jsonl") findings)"
        else
            status=1
            echo "DIFFERENT  $input, $config: ${differing[*]}"
            for f in "${differing[@]}"; do
                diff "$WORK/old/$f" "$WORK/new/$f" | head -8 | sed "s/^/    $f: /"
            done
        fi
    done
done
exit $status
