#!/usr/bin/env bash
# Measures `tokenward hunt` (release build, all built-in detections) on the
# generated benchmark input: MB/s, records/s, CPU seconds and peak memory
# (/usr/bin/time -v), RUNS times (default 3) with the load average of each run:
# on a shared box report the best and the median, and the CPU seconds.
# Usage: [RUNS=3] [BIN=tokenward] bench/hunt_bench.sh [TOTAL_MB] [DATA_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${1:-1100}
DATA=${2:-/work/bench-data/hunt-$MB}
TARGET=${CARGO_TARGET_DIR:-target}
if [ ! -d "$DATA" ]; then
  python3 bench/hunt_gen.py "$MB" "$DATA"
fi
# BIN=path measures a saved build (e.g. the previous HEAD) instead.
if [ -z "${BIN:-}" ]; then
  cargo build --release -p tokenward >/dev/null
  BIN="$TARGET/release/tokenward"
fi
OUT=$(mktemp -d)
# Warm the page cache so the figure is the tool, not the disk.
cat "$DATA"/* >/dev/null
for run in $(seq "${RUNS:-3}"); do
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
/usr/bin/time -v "$BIN" hunt "$DATA" -q --output-format jsonl -o "$OUT/findings.jsonl" \
  --summary-json "$OUT/summary.json" 2>"$OUT/time.txt"
python3 - "$OUT" "$DATA" "$LOAD" <<'PY'
import json, re, sys, os
out, data, load = sys.argv[1], sys.argv[2], sys.argv[3]
s = json.load(open(os.path.join(out, "summary.json")))
t = open(os.path.join(out, "time.txt")).read()
wall = t.split("Elapsed (wall clock) time (h:mm:ss or m:ss):")[1].split("\n")[0].strip()
parts = [float(x) for x in wall.split(":")]
secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
cpu = re.search(r"Percent of CPU this job got: (\d+)%", t).group(1)
user = float(re.search(r"User time \(seconds\): ([\d.]+)", t).group(1))
sys_s = float(re.search(r"System time \(seconds\): ([\d.]+)", t).group(1))
mb = s["bytes"] / 1e6
rec = s["records"]["read"]
print(f"input: {data}: {mb:.0f} MB, {rec} records, {s['records']['rejected']} rejected, {s['findings']} findings; load {load}")
print(f"  wall {secs:.2f} s, CPU {cpu}% ({user + sys_s:.2f} CPU-s, {mb / (user + sys_s):.0f} MB per CPU-s): "
      f"{mb / secs:.0f} MB/s, {rec / secs / 1000:.0f} k records/s, peak RSS {rss / 1024:.0f} MiB")
PY
done
rm -rf "$OUT"
