#!/usr/bin/env bash
# Measures `tokenward hunt` with the built-in detections only, then with the
# built-in detections plus every SigmaHQ cloud rule in tests/fixtures/sigma
# (and our rules/), on the input bench/hunt_gen.py generates: MB/s and peak
# memory (/usr/bin/time -v), best of RUNS runs each.
# Usage: bench/sigma_bench.sh [TOTAL_MB] [DATA_DIR] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${1:-1100}
DATA=${2:-/work/bench-data/hunt-$MB}
RUNS=${3:-3}
TARGET=${CARGO_TARGET_DIR:-target}
if [ ! -d "$DATA" ]; then
  python3 bench/hunt_gen.py "$MB" "$DATA"
fi
cargo build --release -p tokenward >/dev/null
BIN="$TARGET/release/tokenward"
OUT=$(mktemp -d)
cat "$DATA"/* >/dev/null
# One run of a configuration.
measure() {
  local name=$1; shift
  for i in 1; do
    /usr/bin/time -v "$BIN" hunt "$DATA" -q --output-format jsonl -o "$OUT/f.jsonl" \
      --summary-json "$OUT/s.json" "$@" 2>"$OUT/time.txt"
    python3 - "$OUT" "$name" <<'PY'
import json, re, sys, os
out, name = sys.argv[1], sys.argv[2]
s = json.load(open(os.path.join(out, "s.json")))
t = open(os.path.join(out, "time.txt")).read()
wall = t.split("Elapsed (wall clock) time (h:mm:ss or m:ss):")[1].split("\n")[0].strip()
secs = sum(float(p) * 60 ** i for i, p in enumerate(reversed(wall.split(":"))))
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
cpu_s = float(re.search(r"User time \(seconds\): ([0-9.]+)", t).group(1)) + float(re.search(r"System time \(seconds\): ([0-9.]+)", t).group(1))
cpu = re.search(r"Percent of CPU this job got: (\d+)%", t).group(1)
mb = s["bytes"] / 1e6
print(f"{name}: {mb:.0f} MB, {s['records']['read']} records, {s['findings']} findings: "
      f"wall {secs:.2f} s, CPU {cpu}% ({cpu_s:.2f} s user+sys), {mb / secs:.0f} MB/s, peak RSS {rss / 1024:.0f} MiB")
PY
  done
}
# Alternate the two configurations so load from other processes on the box
# hits both alike; compare the best run of each (and the CPU seconds).
for i in $(seq "$RUNS"); do
  measure "built-in only"
  measure "built-in + SigmaHQ cloud + rules/" --rules tests/fixtures/sigma --rules rules
done
rm -rf "$OUT"
