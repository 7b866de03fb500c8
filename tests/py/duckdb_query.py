"""Runs one SQL query in DuckDB against the test S3 server and prints the rows as JSON.

Usage: duckdb_query.py SQL   (S3 settings from LAKESINK_S3_* environment variables)
"""
import json
import os
import sys

import duckdb

con = duckdb.connect()
con.execute(f"LOAD '{os.environ['LAKESINK_DUCKDB_HTTPFS']}'")
endpoint = os.environ["LAKESINK_S3_ENDPOINT"].split("://", 1)[1]
con.execute(
    f"""CREATE SECRET s3 (TYPE s3, KEY_ID '{os.environ['LAKESINK_S3_KEY']}',
        SECRET '{os.environ['LAKESINK_S3_SECRET']}', ENDPOINT '{endpoint}',
        URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')"""
)
cur = con.execute(sys.argv[1])
cols = [d[0] for d in cur.description]
print(json.dumps([dict(zip(cols, row)) for row in cur.fetchall()], default=str))
