#!/usr/bin/env bash
# Time of one Sigma correlation over one group (per Workload, 24 h window,
# a condition never met, so every window is looked at) as the number of
# matching events grows: 10k, 100k, 1M (or the counts given). Doubling the
# events should roughly double the time. TYPE picks the correlation:
# value_count (distinct UserId, the default), value_sum, value_avg,
# value_median, value_percentile (of Size), event_count, temporal or
# temporal_ordered (a failure, then a success that never comes).
# DAYS (default 1) spreads the events over that many days, so windows are
# decided while the hunt goes (24 h behind the newest match) rather than at
# the end.
# SPAN (default 24h) is the correlation's timespan.
# GROUP_BY=UserId groups by user instead, over USERS users (default 50000)
# taking turns: with DAYS > 1 and a short SPAN, every user's group is dense,
# so windows of many groups are decided while the hunt goes.
# QUIET_DAYS=N (default 0) puts N quiet days first, a match every 30
# minutes of each group, so groups are decided while the hunt goes before
# the COUNT matches flood them.
# CORRELATIONS=N (default 1) loads N copies of the correlation (ids apart),
# each keeping its own groups over the same matches: the memory of a rule
# set whose correlations all see one flood.
# Usage: [BIN=target/release/tokenward] [TYPE=value_count] [DAYS=1] [SPAN=24h]
#        [GROUP_BY=Workload] [USERS=50000] [QUIET_DAYS=0] [CORRELATIONS=1]
#        bench/correlation_bench.sh [COUNT...]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/tokenward}
COUNTS=${*:-10000 100000 1000000}
TYPE=${TYPE:-value_count}
DAYS=${DAYS:-1}
SPAN=${SPAN:-24h}
GROUP_BY=${GROUP_BY:-Workload}
USERS=${USERS:-50000}
QUIET_DAYS=${QUIET_DAYS:-0}
CORRELATIONS=${CORRELATIONS:-1}
case $TYPE in
  value_count) RULES=failed_logon; COND="field: UserId
    gte: 1000000000" ;;
  value_sum | value_avg | value_median) RULES=failed_logon; COND="field: Size
    gte: 1000000000000" ;;
  value_percentile) RULES=failed_logon; COND="field: Size
    percentile: 90
    gte: 1000000000000" ;;
  event_count) RULES=failed_logon; COND="gte: 1000000000" ;;
  temporal | temporal_ordered) RULES="failed_logon, logged_in"; COND="gte: 2" ;;
  *) echo "unknown TYPE $TYPE" >&2; exit 2 ;;
esac
WORK=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$WORK"' EXIT
cat > "$WORK/rules.yml" <<YAML
title: failed logon
id: 5f1c0000-0000-4000-8000-000000000001
name: failed_logon
logsource: {product: m365, service: audit}
detection:
  selection: {Operation: UserLoginFailed}
  condition: selection
level: low
---
title: logon
id: 5f1c0000-0000-4000-8000-000000000003
name: logged_in
logsource: {product: m365, service: audit}
detection:
  selection: {Operation: UserLoggedIn}
  condition: selection
level: low
YAML
for c in $(seq 1 "$CORRELATIONS"); do
  cat >> "$WORK/rules.yml" <<YAML
---
title: many users failing per workload $c
id: 5f1c0000-0000-4000-8001-$(printf '%012d' "$c")
correlation:
  type: $TYPE
  rules: [$RULES]
  group-by: [$GROUP_BY]
  timespan: $SPAN
  condition:
    $COND
level: high
YAML
done
for n in $COUNTS; do
  python3 - "$n" "$DAYS" "$USERS" "$QUIET_DAYS" "$GROUP_BY" > "$WORK/logs.jsonl" <<'PY'
import sys, datetime
n, days, users, quiet = (int(a) for a in sys.argv[1:5])
groups = min(users, n) if sys.argv[5] == "UserId" else 1
start = datetime.datetime(2024, 3, 1)
def line(t, i):
    print('{"CreationTime":"%s","Operation":"UserLoginFailed","Workload":"AzureActiveDirectory","UserId":"user%d@contoso.example","ClientIP":"198.51.100.%d","Size":%d}'
          % (t.strftime("%Y-%m-%dT%H:%M:%S"), i % users, i % 250, (i * 7919) % 100003))
for k in range(quiet * 48):
    for u in range(groups):
        line(start + datetime.timedelta(minutes=30 * k), u)
start += datetime.timedelta(days=quiet)
for i in range(n):
    t = start + datetime.timedelta(seconds=(i % 86400) if days == 1 else i * 86400 * days // n)
    line(t, i)
PY
  /usr/bin/time -f "%e %U %S %M" "$BIN" hunt --output-format jsonl -o /dev/null \
    --rules "$WORK/rules.yml" "$WORK/logs.jsonl" 2> "$WORK/time.txt" || true
  read -r wall user sys rss < <(tail -1 "$WORK/time.txt")
  printf '%-16s %-9s %4s span %3s d %8d events: wall %6.2f s, CPU %6.2f s, peak RSS %5d MiB\n' "$TYPE" "$GROUP_BY" "$SPAN" "$DAYS" "$n" "$wall" \
    "$(echo "$user + $sys" | bc)" "$((rss / 1024))"
  # The correlation's note: matches fed, and any left out of windows.
  grep -o '[0-9]* matches fed.*' "$WORK/time.txt" | sed 's/^/    /' || true
done
