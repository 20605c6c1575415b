#!/usr/bin/env python3
"""Writes N synthetic hunt findings (JSON lines) shaped like a large tenant's:
thousands of users, a few hundred shared IPs, every built-in detection and
some Sigma rules, severities and evidence of realistic size, 60 days.
Not tuned to the report: ids, values and sizes are drawn at random.

usage: gen_findings.py N OUT.jsonl [SEED]
"""
import json
import random
import sys

n, out = int(sys.argv[1]), sys.argv[2]
rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 7)
rules = [
    "tw-ioc-ip", "tw-ioc-useragent", "tw-ioc-key", "tw-mail-new-client-app",
    "tw-token-without-signin", "tw-owa-token-for-resource", "tw-mail-bind-spike",
    "tw-mail-throttled", "tw-mail-sync-unusual-client", "tw-audit-tampering",
    "tw-audit-gap", "tw-gateway-rejected-burst", "tw-mailbox-export",
    "5e6a8f1c-sigma-impossible-travel", "9d2b7c44-sigma-new-inbox-rule",
]
weights = [8, 6, 1, 20, 6, 3, 4, 3, 6, 1, 1, 2, 1, 25, 13]
users = [f"user{i:05d}@contoso.example" for i in range(5000)]
ips = [f"203.0.{rng.randrange(256)}.{rng.randrange(256)}" for _ in range(400)]
start = 1_700_000_000
with open(out, "w") as f:
    for i in range(n):
        rule = rng.choices(rules, weights)[0]
        t = start + rng.randrange(60 * 86400)
        user = rng.choice(users)
        ev = {"operation": rng.choice(["MailItemsAccessed", "UserLoggedIn", "Set-Mailbox", "Send"]),
              "records": rng.randrange(1, 500),
              "why": "x" * rng.randrange(20, 200),
              "user_agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) " + "A" * rng.randrange(0, 120)}
        if rule == "tw-mail-bind-spike":
            ev["items_bound_that_day"] = rng.randrange(100, 5000)
            ev["mailbox"] = user
        if rule == "tw-audit-gap":
            ev.update(gap_start=f"2023-11-{rng.randrange(1, 28):02d}T00:00:00Z",
                      gap_end=f"2023-11-{rng.randrange(1, 28):02d}T12:00:00Z", workload="Exchange", hours=30)
        d = {"rule_id": rule, "rule_title": rule.replace("-", " "),
             "severity": rng.choice(["low", "medium", "high"]),
             "time": __import__("datetime").datetime.utcfromtimestamp(t).strftime("%Y-%m-%dT%H:%M:%SZ"),
             "user": None if rule == "tw-audit-gap" else user,
             "client_ip": None if rule == "tw-audit-gap" else rng.choice(ips),
             "app_id": rng.choice([None, "00000002-0000-0ff1-ce00-000000000000", "d3590ed6-52b3-4102-aeff-aad2292ab01c"]),
             "session_id": rng.choice([None, f"{rng.getrandbits(64):016x}"]),
             "token_id": rng.choice([None, f"{rng.getrandbits(80):020x}"]),
             "source_file": f"logs/part-{rng.randrange(40):03d}.jsonl",
             "source_locator": f"line {rng.randrange(1, 2_000_000)}",
             "evidence": ev}
        f.write(json.dumps(d) + "\n")
