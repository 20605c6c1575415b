#!/usr/bin/env bash
# Compares two directories of findings saved by `SAVE_FINDINGS=DIR bench/matrix.sh`
# (one sorted JSONL file per shape and configuration, source paths relative to
# the data directory), e.g. the build before a change and the build after it.
# Prints per file whether it is identical, and a short diff when it is not.
# Exit status: 0 when every file is identical and both directories hold the
# same files, 1 on any difference, 2 on a usage error.
# Usage: bench/compare_findings.sh DIR_A DIR_B
set -uo pipefail
if [ $# -ne 2 ] || [ ! -d "$1" ] || [ ! -d "$2" ]; then
  echo "usage: $0 DIR_A DIR_B (directories written by SAVE_FINDINGS=DIR bench/matrix.sh)" >&2
  exit 2
fi
A=$1 B=$2 status=0
names=$( (cd "$A" && ls -1 -- *.jsonl 2>/dev/null; cd "$B" && ls -1 -- *.jsonl 2>/dev/null) | sort -u)
if [ -z "$names" ]; then
  echo "no *.jsonl files in $A or $B" >&2
  exit 2
fi
for n in $names; do
  if [ ! -f "$A/$n" ]; then echo "ONLY IN $B: $n"; status=1; continue; fi
  if [ ! -f "$B/$n" ]; then echo "ONLY IN $A: $n"; status=1; continue; fi
  if cmp -s "$A/$n" "$B/$n"; then
    echo "same       $n ($(wc -l < "$A/$n") findings)"
  else
    status=1
    echo "DIFFERENT  $n ($(wc -l < "$A/$n") vs $(wc -l < "$B/$n") findings; $(comm -23 "$A/$n" "$B/$n" | wc -l) only in A, $(comm -13 "$A/$n" "$B/$n" | wc -l) only in B)"
    python3 - "$A/$n" "$B/$n" <<'PY'
import collections, json, sys
def load(p):
    return collections.Counter(json.loads(l).get("rule_id") for l in open(p) if l.strip())
a, b = load(sys.argv[1]), load(sys.argv[2])
for rid in sorted(set(a) | set(b), key=str):
    if a[rid] != b[rid]:
        print(f"             {rid}: {a[rid]} -> {b[rid]}")
PY
    diff <(cat "$A/$n") <(cat "$B/$n") | head -6 | cut -c1-300 | sed 's/^/             /'
  fi
done
exit $status
