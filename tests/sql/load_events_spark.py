"""Reads `tokenward events` output with PySpark through the schema string
`tokenward sql --dialect spark --schema` prints (FAILFAST: any row that does
not fit is an error), then prints one JSON line of counts for the Rust test.

usage: load_events_spark.py SCHEMA.txt EVENTS.jsonl
"""
import json
import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

schema_file, events = sys.argv[1:3]
spark = (
    SparkSession.builder.master("local[1]")
    .appName("tokenward-events-schema")
    .config("spark.ui.enabled", "false")
    .config("spark.sql.session.timeZone", "UTC")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
df = spark.read.schema(open(schema_file).read().strip()).option("mode", "FAILFAST").json(events)
row = df.agg(
    F.count("*").alias("rows"),
    F.count("time").alias("timed"),
    F.countDistinct("source_file", "source_locator").alias("located"),
    F.sum(F.when(F.col("log_kind") == "signin", 1).otherwise(0)).alias("signins"),
    F.sum(
        F.when(F.get_json_object("raw", "$.Operation") == "MailItemsAccessed", 1).otherwise(0)
    ).alias("mail"),
).collect()[0]
print(json.dumps(row.asDict()))
spark.stop()
