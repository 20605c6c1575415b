"""Times `tokenward sql` scripts in chDB (embedded ClickHouse): loading the
events into the MergeTree table the printed schema creates, then running
the findings query. Prints one JSON line: load_s, query_s, rows, findings.

usage: sql_chdb.py SCHEMA.sql EVENTS.jsonl SCRIPT.sql WORKDIR FINDINGS_OUT
"""
import json
import sys
import time

from chdb import session

schema_file, events, script_file, workdir, out_file = sys.argv[1:6]
s = session.Session(workdir)
s.query("CREATE DATABASE IF NOT EXISTS tw")
s.query("USE tw")
s.query("DROP TABLE IF EXISTS tokenward_events")
s.query(open(schema_file).read().strip().rstrip(";"))
t0 = time.monotonic()
s.query(
    f"INSERT INTO tokenward_events SELECT * FROM file('{events}', 'JSONEachRow') "
    "SETTINGS date_time_input_format = 'best_effort'"
)
load_s = time.monotonic() - t0
rows = int(str(s.query("SELECT count() FROM tokenward_events", "CSV")).strip())
statements = [x.strip() for x in open(script_file).read().split(";\n") if x.strip()]
t0 = time.monotonic()
for st in statements[:-1]:
    s.query(st)
out = str(s.query(statements[-1] + " FORMAT JSONEachRow", "JSONEachRow"))
query_s = time.monotonic() - t0
lines = [l for l in out.splitlines() if l.strip()]
with open(out_file, "w") as f:
    f.write("\n".join(lines) + ("\n" if lines else ""))
print(json.dumps({"load_s": round(load_s, 2), "query_s": round(query_s, 2), "rows": rows, "findings": len(lines)}))
