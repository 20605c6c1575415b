#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each (default 600),
# one after another on one core, starting from the committed seeds, the
# committed minimised corpora (fuzz/corpora/) and whatever earlier runs left
# in fuzz/corpus/. Prints, per target, the runs,
# the edge coverage and features at the end, and whether it crashed.
# The toolchain is stable: RUSTC_BOOTSTRAP lets cargo-fuzz pass its
# sanitizer flags. Usage: fuzz/run.sh [SECONDS] [TARGET...]
set -uo pipefail
cd "$(dirname "$0")"
SECONDS_EACH=${1:-600}
shift || true
TARGETS=${*:-read_log sigma_rules sigma_condition policy_toml gateway_request gateway_http1}
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O --debug-assertions >/dev/null 2>&1 || { echo "build failed"; exit 2; }
mkdir -p out
status=0
for t in $TARGETS; do
  mkdir -p "corpus/$t" "artifacts/$t"
  # Start from the committed, minimised corpus of earlier runs.
  if [ -f "corpora/$t.tar.gz" ] && [ -z "$(ls -A "corpus/$t")" ]; then
    tar -C "corpus/$t" -xzf "corpora/$t.tar.gz"
  fi
  log="out/$t.log"
  cargo fuzz run -O --debug-assertions "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$SECONDS_EACH" -max_len=65536 -rss_limit_mb=2048 -timeout=20 \
    -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"$log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(echo "$last" | grep -o 'cov: [0-9]*' | grep -o '[0-9]*')
  ft=$(echo "$last" | grep -o 'ft: [0-9]*' | grep -o '[0-9]*')
  crashes=$(ls "artifacts/$t" | wc -l)
  printf '%-16s %4ss  runs %10s  cov %6s  ft %6s  exit %s  artifacts %s\n' \
    "$t" "$SECONDS_EACH" "${runs:-?}" "${cov:-?}" "${ft:-?}" "$rc" "$crashes"
  [ "$rc" -eq 0 ] || status=1
done
exit $status
