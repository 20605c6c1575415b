"""Runs a `tokenward sql --dialect clickhouse` script in chDB (embedded
ClickHouse) over `tokenward events` output loaded through the printed
CREATE TABLE, and prints each finding row as one JSON line.

usage: findings_chdb.py SCHEMA.sql EVENTS.jsonl SCRIPT.sql WORKDIR
"""
import json
import sys

from chdb import session

schema_file, events, script_file, workdir = sys.argv[1:5]
s = session.Session(workdir)
s.query("CREATE DATABASE IF NOT EXISTS tw")
s.query("USE tw")
s.query("DROP TABLE IF EXISTS tokenward_events")
s.query(open(schema_file).read().strip().rstrip(";"))
s.query(
    f"INSERT INTO tokenward_events SELECT * FROM file('{events}', 'JSONEachRow') "
    "SETTINGS date_time_input_format = 'best_effort'"
)
# Statements end with ';' at the end of a line; the last one is the SELECT.
statements = [x.strip() for x in open(script_file).read().split(";\n") if x.strip()]
for st in statements[:-1]:
    s.query(st)
out = s.query(statements[-1] + " FORMAT JSONEachRow", "JSONEachRow")
for line in str(out).splitlines():
    if line.strip():
        print(json.dumps(json.loads(line)))
