#!/usr/bin/env bash
# Benchmark matrix: `tokenward hunt` (built-in detections alone, then with the
# SigmaHQ cloud rules + rules/) and Chainsaw (same Sigma rules) on the input
# shapes made by bench/gen_matrix.py, which simulates tenants rather than
# tokenward's detections:
#   signin       Graph signIn JSON lines + Azure Monitor PT1H JSON lines
#   ual          Management Activity API JSON lines, 40+ operations
#   purview-csv  Purview audit-search CSV export of the same kind of records
#   gzip         half UAL, half sign-ins, gzip-compressed (SIZE_MB uncompressed)
#   mail         the MailItemsAccessed-heavy shape of bench/hunt_gen.py
#   signin-envelope  the sign-ins of `signin` as Azure Monitor {"records":[...]}
#                and Graph {"value":[...]} envelopes
#   ual-powershell  the records of `ual` as Windows PowerShell saves
#                Search-UnifiedAuditLog output (ConvertTo-Json | Out-File:
#                UTF-16 LE, pretty-printed, AuditData as a string)
#   la-csv       the sign-ins of `signin` as Log Analytics portal CSV exports
#                (renamed `X [UTC]` and `X_dynamic`/`X_string` columns)
#   entra-audit  Entra directory audits (Azure Monitor AuditLogs and Graph
#                directoryAudit JSON lines) and Azure Activity JSON lines
# Chainsaw runs on OUT.chainsaw/ twins (see bench/gen_matrix.py): same bytes
# for sign-ins, UAL with `.0000000Z` added to CreationTime; it cannot read the
# purview-csv, gzip, signin-envelope, ual-powershell and la-csv shapes at all.
#
# Usage: [BIN=...] [CHAINSAW=...] [SHAPES="..."] [SAVE_FINDINGS=DIR] [TABLE=FILE]
#        bench/matrix.sh [SIZE_MB] [DATA_ROOT] [RUNS]
#   SIZE_MB    per shape, default 500
#   DATA_ROOT  default /work/bench-data/matrix-$SIZE_MB (missing shapes are generated)
#   RUNS       default 3; each shape's configurations alternate run by run;
#              the table gives best and median
#   BIN        tokenward binary (default target/release/tokenward; this script never builds)
#   SAVE_FINDINGS=DIR  keep each tokenward configuration's findings (first run),
#              sorted, source paths relative to the data dir, as DIR/<shape>-<config>.jsonl;
#              compare two builds with bench/compare_findings.sh DIR_A DIR_B
#   TABLE=FILE also write the Markdown table to FILE
#   GEN_ONLY=1 only generate the missing shapes, measure nothing
# Every run is timed with /usr/bin/time -v; a tokenward exit status other
# than 0/1, any rejected record, a Chainsaw error or findings that differ
# between runs of one configuration is reported, and the script exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
SIZE=${1:-500}
ROOT=${2:-/work/bench-data/matrix-$SIZE}
RUNS=${3:-3}
BIN=${BIN:-$REPO/target/release/tokenward}
CHAINSAW=${CHAINSAW:-/work/shared/anchors/chainsaw/chainsaw}
SHAPES=${SHAPES:-signin ual purview-csv gzip mail signin-envelope ual-powershell la-csv entra-audit}
RULES=(tests/fixtures/sigma/rules rules)
MAPPING=bench/chainsaw-matrix-mapping.yml
REPORT="python3 $REPO/bench/matrix_report.py"

[ -x "$BIN" ] || { echo "matrix.sh: no tokenward binary at $BIN (set BIN=...)" >&2; exit 2; }
HAVE_CS=1
[ -x "$CHAINSAW" ] || { echo "matrix.sh: no Chainsaw at $CHAINSAW: Chainsaw rows skipped" >&2; HAVE_CS=0; }
mkdir -p "$ROOT"
ROOT=$(cd "$ROOT" && pwd)

# 1. Generate what is missing. A shape is complete when ROOT/<shape>.done exists.
for shape in $SHAPES; do
  if [ ! -e "$ROOT/$shape.done" ]; then
    rm -rf "${ROOT:?}/$shape" "${ROOT:?}/$shape.chainsaw"
    python3 bench/gen_matrix.py "$shape" "$SIZE" "$ROOT/$shape" | tee "$ROOT/$shape.gen.txt" >&2
    touch "$ROOT/$shape.done"
  elif [ ! -d "$ROOT/$shape.chainsaw" ] && [ "$shape" != purview-csv ] && [ "$shape" != gzip ] \
    && [ "$shape" != signin-envelope ] && [ "$shape" != ual-powershell ] && [ "$shape" != la-csv ]; then
    python3 bench/gen_matrix.py "$shape" "$SIZE" "$ROOT/$shape" --twin-only >&2
  fi
done

if [ -n "${GEN_ONLY:-}" ]; then exit 0; fi

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
TSV=$ROOT/matrix-runs.tsv
PROBLEMS=$ROOT/matrix-problems.txt
: > "$PROBLEMS"
echo -e "shape\tconfig\trun\trc\tload\twall\tuser\tsys\trss_kb\tcpu_pct\tbytes\trecords\trejected\tfindings\tdisk_bytes\tproblem" > "$TSV"
[ -n "${SAVE_FINDINGS:-}" ] && mkdir -p "$SAVE_FINDINGS"
FAIL=0

# One timed run: measure SHAPE CONFIG RUN
measure() {
  local shape=$1 config=$2 run=$3 data=$ROOT/$1 rc load bytes
  load=$(cut -d' ' -f1 /proc/loadavg)
  rm -f "$OUT"/f.jsonl "$OUT"/s.json "$OUT"/cs.jsonl
  if [ "$config" = chainsaw ]; then
    data=$ROOT/$shape.chainsaw
    bytes=$($REPORT size "$data")
    set +e
    /usr/bin/time -v -o "$OUT/time.txt" "$CHAINSAW" hunt "$data" -s "${RULES[0]}" -s "${RULES[1]}" \
      -m "$MAPPING" --load-unknown --jsonl -o "$OUT/cs.jsonl" >"$OUT/cs.log" 2>&1
    rc=$?
    set -e
    $REPORT row "$shape" "$config" "$run" "$rc" "$load" "$OUT/time.txt" "$bytes" "$OUT/cs.jsonl" "$OUT/cs.log" >> "$TSV" || FAIL=1
    [ "$run" = 1 ] && sed 's/\x1b\[[0-9;]*m//g' "$OUT/cs.log" | grep -a -E 'Loaded .*rules|\[x\]|\[!\]' | sed "s|^|  chainsaw $shape: |" | head -5 >&2
  else
    local extra=()
    [ "$config" = sigma ] && extra=(--rules "${RULES[0]}" --rules "${RULES[1]}")
    set +e
    /usr/bin/time -v -o "$OUT/time.txt" "$BIN" hunt "$data" -q --output-format jsonl -o "$OUT/f.jsonl" \
      --summary-json "$OUT/s.json" "${extra[@]}" 2>"$OUT/stderr.txt"
    rc=$?
    set -e
    if [ "$rc" != 0 ] && [ "$rc" != 1 ]; then
      echo "tokenward $shape $config exited $rc:" >&2; head -20 "$OUT/stderr.txt" >&2; FAIL=1
    fi
    $REPORT row "$shape" "$config" "$run" "$rc" "$load" "$OUT/time.txt" "$UNCOMPRESSED" "$OUT/s.json" >> "$TSV" || FAIL=1
    if [ -f "$OUT/f.jsonl" ]; then
      $REPORT norm "$OUT/f.jsonl" "$data" "$OUT/norm-$run.jsonl"
      if [ "$run" = 1 ]; then
        cp "$OUT/norm-1.jsonl" "$OUT/first-$shape-$config.jsonl"
        [ -n "${SAVE_FINDINGS:-}" ] && cp "$OUT/norm-1.jsonl" "$SAVE_FINDINGS/$shape-$config.jsonl"
      elif ! cmp -s "$OUT/norm-$run.jsonl" "$OUT/first-$shape-$config.jsonl"; then
        echo "PROBLEM $shape $config: run $run findings differ from run 1" >&2; FAIL=1
        echo "$shape / $config run $run: findings differ from run 1 ($(wc -l < "$OUT/norm-$run.jsonl") vs $(wc -l < "$OUT/first-$shape-$config.jsonl") lines)" >> "$PROBLEMS"
      fi
    fi
  fi
  tail -1 "$TSV" | awk -F'\t' '{printf "  %-12s %-9s run %s: wall %ss user %ss sys %ss CPU %s%% RSS %d MiB findings %s rejected %s load %s %s\n",
    $1, $2, $3, $6, $7, $8, $10, $9 / 1024, $14, $13, $5, $16}' >&2
}

{
  echo "# tokenward hunt benchmark matrix"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ), host: $(nproc) CPU(s), $(free -g | awk '/Mem:/ {print $2}') GiB RAM"
  echo "- tokenward: \`$BIN\` ($(stat -c %s "$BIN") bytes, sha256 $(sha256sum "$BIN" | cut -c1-16))"
  [ "$HAVE_CS" = 1 ] && echo "- Chainsaw: \`$CHAINSAW\` ($("$CHAINSAW" --version 2>/dev/null | head -1)), mapping \`$MAPPING\`, \`--load-unknown --jsonl -o\`"
  echo "- Sigma: ${RULES[*]} (tokenward \`--rules\`, Chainsaw \`-s\`)"
  echo "- data: \`$ROOT\`, $SIZE MB per shape, $RUNS run(s) per configuration, configurations alternated, page cache warm"
} > "$OUT/header.md"
cat "$OUT/header.md" >&2

for shape in $SHAPES; do
  echo "== $shape" >&2
  # Warm the page cache (the twin's links point at the same files).
  find -L "$ROOT/$shape" -type f -exec cat {} + >/dev/null
  [ -d "$ROOT/$shape.chainsaw" ] && find -L "$ROOT/$shape.chainsaw" -type f -exec cat {} + >/dev/null
  UNCOMPRESSED=$($REPORT size "$ROOT/$shape")
  configs="builtin sigma"
  if [ "$HAVE_CS" = 1 ] && [ -d "$ROOT/$shape.chainsaw" ]; then configs="$configs chainsaw"; fi
  for run in $(seq "$RUNS"); do
    for config in $configs; do
      measure "$shape" "$config" "$run"
    done
  done
done

{
  cat "$OUT/header.md"
  echo
  $REPORT table "$TSV" "$PROBLEMS"
  echo
  echo "Notes: CPU-s = user + sys; MB per CPU-s uses the best CPU-s; CPU % near 100 means one core of $(nproc) was used."
  echo "Chainsaw's record count is the tokenward count of the same records (in parentheses); its MB are its own input"
  echo "(UAL twins are 9 bytes a record longer). Chainsaw \`hits\` = lines of its JSONL output. Input MB are uncompressed"
  echo "bytes (gzip: the on-disk size in parentheses), UTF-16 counted as the UTF-8 it holds; MB/s and MB per CPU-s use them."
} > "$OUT/table.md"
cat "$OUT/table.md"
[ -n "${TABLE:-}" ] && cp "$OUT/table.md" "$TABLE"
if awk -F'\t' 'NR > 1 && $16 != "" {bad = 1} END {exit !bad}' "$TSV"; then FAIL=1; fi
if [ -s "$PROBLEMS" ]; then FAIL=1; fi
exit $FAIL
