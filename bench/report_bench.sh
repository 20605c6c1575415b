#!/usr/bin/env bash
# The HTML report of a large hunt: build time, file size, and how long
# headless Chromium takes to load it (parse, run its script, lay out and
# paint a screenshot), against an empty page in the same run.
#
# usage: bench/report_bench.sh [FINDINGS=100000] [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
ROUNDS=${2:-3}
BIN=${TOKENWARD_BIN:-target/release/tokenward}
[ -x "$BIN" ] || cargo build --release -p tokenward
out=bench/out/report
mkdir -p "$out"
python3 bench/gen_findings.py "$N" "$out/findings.jsonl"
printf '<!doctype html><title>empty</title><p>empty' > "$out/empty.html"

start=$(date +%s.%N)
"$BIN" report --findings "$out/findings.jsonl" -o "$out/report.html"
end=$(date +%s.%N)
build=$(echo "$end - $start" | bc)
size=$(stat -c %s "$out/report.html")

chrome() {
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$out/profile" --window-size=1280,1000 "$@" >/dev/null 2>&1
}
load() { # prints seconds for one screenshot of $1
    local s e
    s=$(date +%s.%N)
    chrome --screenshot="$out/shot.png" "file://$PWD/$1"
    e=$(date +%s.%N)
    echo "$e - $s" | bc
}
chrome --screenshot="$out/shot.png" "file://$PWD/$out/empty.html" # warm the profile
echo "findings: $N"
echo "report build: ${build}s, size: $size bytes ($(echo "scale=2; $size/1048576" | bc) MiB)"
for r in $(seq "$ROUNDS"); do
    e=$(load "$out/empty.html")
    p=$(load "$out/report.html")
    echo "round $r: empty page ${e}s, report ${p}s, report - empty $(echo "$p - $e" | bc)s"
done
