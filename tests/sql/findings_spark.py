"""Runs a `tokenward sql --dialect spark` script in Apache Spark (local
mode) over `tokenward events` output read through the printed schema
(FAILFAST), and prints each finding row as one JSON line.

usage: findings_spark.py SCHEMA.txt EVENTS.jsonl SCRIPT.sql
"""
import json
import os
import sys
import time

# Timestamps reach Python in its local zone: make that UTC.
os.environ["TZ"] = "UTC"
time.tzset()

from pyspark.sql import SparkSession

schema_file, events, script_file = sys.argv[1:4]
spark = (
    SparkSession.builder.master("local[2]")
    .appName("tokenward-sql")
    .config("spark.ui.enabled", "false")
    .config("spark.sql.session.timeZone", "UTC")
    # A compiled rule set is one large plan; its text is only for logs.
    .config("spark.driver.memory", "2g")
    .config("spark.sql.maxPlanStringLength", "100000")
    .config("spark.sql.shuffle.partitions", "4")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
df = spark.read.schema(open(schema_file).read().strip()).option("mode", "FAILFAST").json(events)
df.createOrReplaceTempView("tokenward_events")
# The script reads the table once per step that scans it; a warehouse
# table is stored columnar, and caching stands for that here (parsing the
# JSON lines again for every scan is not what an engine over a table does).
spark.catalog.cacheTable("tokenward_events")
statements = [x.strip() for x in open(script_file).read().split(";\n") if x.strip()]
for st in statements[:-1]:
    spark.sql(st)
for row in spark.sql(statements[-1]).toLocalIterator():
    d = row.asDict()
    if d.get("time") is not None:
        d["time"] = d["time"].isoformat()
    print(json.dumps(d))
spark.stop()
