#!/usr/bin/env bash
# Loading and matching a Sigma rule with a huge value list: N plain values,
# then N wildcard (`*value*`) values, over M records. Prints wall time and
# peak RSS of `rules check` (load only) and of `hunt`.
# Usage: [BIN=target/release/tokenward] bench/sigma_values_bench.sh [N] [M]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/tokenward}
N=${1:-100000}
M=${2:-200000}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 - "$N" "$M" "$WORK" <<'PY'
import sys
n, m, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for name, fmt in (("plain", "'user%d@contoso.example'"), ("wild", "'*user%d@contoso*'")):
    vals = "\n".join("      - " + fmt % i for i in range(n))
    open(f"{out}/{name}.yml", "w").write(
        f"title: many values ({name})\nid: 6a000000-0000-4000-8000-00000000000{len(name)}\n"
        f"logsource: {{product: m365, service: audit}}\ndetection:\n  selection:\n    UserId:\n{vals}\n"
        "  condition: selection\nlevel: low\n")
with open(f"{out}/logs.jsonl", "w") as f:
    for i in range(m):
        f.write('{"CreationTime":"2024-03-01T10:00:00","Operation":"Send","Workload":"Exchange","UserId":"user%d@contoso.example"}\n' % (i * 7))
PY
for r in plain wild; do
  /usr/bin/time -f "$r: rules check %e s, peak RSS %M KiB" "$BIN" rules check "$WORK/$r.yml" >/dev/null
  /usr/bin/time -f "$r: hunt over $M records %e s, peak RSS %M KiB" \
    "$BIN" hunt -q --output-format jsonl -o /dev/null --rules "$WORK/$r.yml" "$WORK/logs.jsonl"
done
