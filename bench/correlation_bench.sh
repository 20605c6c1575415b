#!/usr/bin/env bash
# Time of one Sigma value_count correlation (distinct UserId per Workload,
# 24 h window) as the number of matching events grows: 10k, 100k, 1M (or the
# counts given). Doubling the events should roughly double the time.
# Usage: [BIN=target/release/tokenward] bench/correlation_bench.sh [COUNT...]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/tokenward}
COUNTS=${*:-10000 100000 1000000}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cat > "$WORK/rules.yml" <<'YAML'
title: failed logon
id: 5f1c0000-0000-4000-8000-000000000001
name: failed_logon
logsource: {product: m365, service: audit}
detection:
  selection: {Operation: UserLoginFailed}
  condition: selection
level: low
---
title: many users failing per workload
id: 5f1c0000-0000-4000-8000-000000000002
correlation:
  type: value_count
  rules: [failed_logon]
  group-by: [Workload]
  timespan: 24h
  condition:
    field: UserId
    gte: 1000000000
level: high
YAML
for n in $COUNTS; do
  python3 - "$n" > "$WORK/logs.jsonl" <<'PY'
import sys
n = int(sys.argv[1])
for i in range(n):
    s = i % 86400
    print('{"CreationTime":"2024-03-01T%02d:%02d:%02d","Operation":"UserLoginFailed","Workload":"AzureActiveDirectory","UserId":"user%d@contoso.example","ClientIP":"198.51.100.%d"}'
          % (s // 3600, s % 3600 // 60, s % 60, i % 50000, i % 250))
PY
  /usr/bin/time -f "%e %U %S %M" "$BIN" hunt -q --output-format jsonl -o /dev/null \
    --rules "$WORK/rules.yml" "$WORK/logs.jsonl" 2> "$WORK/time.txt" || true
  read -r wall user sys rss < <(tail -1 "$WORK/time.txt")
  printf '%8d events: wall %6.2f s, CPU %6.2f s, peak RSS %5d MiB\n' "$n" "$wall" \
    "$(echo "$user + $sys" | bc)" "$((rss / 1024))"
done
