#!/usr/bin/env bash
# The compiled detections (the Sigma rules of tests/fixtures/sigma and
# rules/, and every built-in) on chDB against `tokenward hunt` with the
# same rules, on bench/gen_matrix.py tenants made of three shapes in equal
# parts (sign-ins, UAL mixed, MailItemsAccessed heavy), at each size
# given. Per size: hunt wall time, `tokenward events` export time and
# size, chDB load and query times, and whether the findings are the same
# (rule id, source_file:source_locator and severity, counted).
#
# Usage: bench/sql_bench.sh [SIZES_MB...]   (default: 100 1000)
# Data: /work/bench-data/sql-SIZE (generated when missing).
# Needs .ci/venv (chdb), made by .ci/run. Never builds: uses target/release.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/target/release/tokenward}
PY=${PY:-$PWD/.ci/venv/bin/python}
SIZES=${*:-100 1000}
RULES=(--rules tests/fixtures/sigma --rules rules)
mkdir -p /work/bench-data
work=$(mktemp -d /work/bench-data/sqlbench.XXXX)
trap 'rm -rf "$work"' EXIT
"$BIN" sql --dialect clickhouse --schema > "$work/schema.sql"
"$BIN" sql --dialect clickhouse "${RULES[@]}" -q > "$work/script.sql"
echo "| input | records | hunt (Sigma + built-ins) | events export | events size | chDB load | chDB query | same findings |"
echo "|---|---|---|---|---|---|---|---|"
for size in $SIZES; do
  data=/work/bench-data/sql-$size
  for shape in signin ual mail; do
    [ -d "$data/$shape" ] || python3 bench/gen_matrix.py "$shape" $((size / 3)) "$data/$shape" >&2
  done
  inputs=("$data/signin" "$data/ual" "$data/mail")
  mb=$(du -smL "${inputs[@]}" | awk '{s+=$1} END {print s}')
  t0=$(date +%s.%N)
  "$BIN" hunt "${inputs[@]}" "${RULES[@]}" -q --output-format jsonl -o "$work/hunt.jsonl" --summary-json "$work/summary.json" || [ $? -eq 1 ]
  t1=$(date +%s.%N)
  "$BIN" events "${inputs[@]}" -q -o "$work/events.jsonl"
  t2=$(date +%s.%N)
  ev_mb=$(du -sm "$work/events.jsonl" | cut -f1)
  rm -rf "$work/chdb"
  res=$("$PY" bench/sql_chdb.py "$work/schema.sql" "$work/events.jsonl" "$work/script.sql" "$work/chdb" "$work/chdb.jsonl")
  rm -f "$work/events.jsonl"
  same=$(python3 - "$work/hunt.jsonl" "$work/chdb.jsonl" <<'PY'
import json, sys
from collections import Counter
def keys(p):
    return Counter((f["rule_id"], f["source_file"], f["source_locator"], f["severity"])
                   for f in map(json.loads, open(p)))
h, c = keys(sys.argv[1]), keys(sys.argv[2])
n = sum(h.values())
print("yes (%d)" % n if h == c else "NO: %d hunt, %d chdb, %d differ" % (n, sum(c.values()), sum(((h - c) + (c - h)).values())))
PY
)
  records=$(python3 -c "import json;print(json.load(open('$work/summary.json'))['records']['read'])")
  python3 - "$mb" "$records" "$t0" "$t1" "$t2" "$ev_mb" "$res" "$same" <<'PY'
import json, sys
mb, records, t0, t1, t2, ev_mb, res, same = sys.argv[1:9]
r = json.loads(res)
print(f"| {mb} MB | {records} | {float(t1)-float(t0):.1f} s | {float(t2)-float(t1):.1f} s | {ev_mb} MB | {r['load_s']:.1f} s | {r['query_s']:.1f} s | {same} |")
PY
done
