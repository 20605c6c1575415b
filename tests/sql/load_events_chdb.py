"""Loads `tokenward events` output into chDB (embedded ClickHouse) through
the table `tokenward sql --dialect clickhouse --schema` prints, then prints
one JSON line of counts for the Rust test to compare with the export.

usage: load_events_chdb.py SCHEMA.sql EVENTS.jsonl WORKDIR
"""
import json
import sys

from chdb import session

schema_file, events, workdir = sys.argv[1:4]
s = session.Session(workdir)
s.query("CREATE DATABASE IF NOT EXISTS tw")
s.query("USE tw")
s.query(open(schema_file).read().strip().rstrip(";"))
s.query(
    f"INSERT INTO tokenward_events SELECT * FROM file('{events}', 'JSONEachRow') "
    "SETTINGS date_time_input_format = 'best_effort'"
)
out = s.query(
    "SELECT count() AS rows, countIf(time IS NOT NULL) AS timed, "
    "uniqExact(source_file, source_locator) AS located, "
    "countIf(log_kind = 'signin') AS signins, "
    "countIf(JSONExtractString(raw, 'Operation') = 'MailItemsAccessed') AS mail "
    "FROM tokenward_events FORMAT JSONEachRow",
    "JSONEachRow",
)
print(json.dumps(json.loads(str(out).strip().splitlines()[0])))
