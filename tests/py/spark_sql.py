"""Runs SQL statements in Spark SQL (pyspark 3.5.6) with the test Hive Metastore as its catalog,
and prints the rows of each statement as JSON: a list with one list of row objects per
statement.

Usage: spark_sql.py FILE   (FILE: a JSON list of SQL statements)
Environment: LAKESINK_HIVE_URI (thrift://host:port), LAKESINK_HIVE_JARS (pyspark/jars).
"""
import json
import os
import sys
import tempfile

jars = os.environ["LAKESINK_HIVE_JARS"].rstrip("/")
sys.path.insert(0, os.path.dirname(os.path.dirname(jars)))  # the directory holding `pyspark`
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

from pyspark.sql import SparkSession  # noqa: E402

warehouse = tempfile.mkdtemp(prefix="lakesink-spark-")
spark = (
    SparkSession.builder.master("local[2]")
    .appName("lakesink-ddl-test")
    .config("spark.ui.enabled", "false")
    .config("spark.driver.bindAddress", "127.0.0.1")
    .config("spark.driver.host", "127.0.0.1")
    .config("spark.sql.warehouse.dir", warehouse)
    .config("spark.sql.catalogImplementation", "hive")
    .config("spark.hadoop.hive.metastore.uris", os.environ["LAKESINK_HIVE_URI"])
    .config("spark.sql.session.timeZone", "UTC")
    .config("spark.sql.shuffle.partitions", "2")
    .enableHiveSupport()
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
out = []
for stmt in json.load(open(sys.argv[1])):
    rows = spark.sql(stmt).collect()
    out.append([r.asDict(recursive=True) for r in rows])
print(json.dumps(out, default=str))
spark.stop()
