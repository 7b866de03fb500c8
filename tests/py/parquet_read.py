"""Reads every Parquet object below a prefix of the test S3 server with pyarrow (an independent
reader) and prints what it found as JSON: rows, distinct eventIDs, the Arrow schema, the Parquet
physical and logical types of the leaf columns, bloom filters, whether every column chunk has
statistics, row groups and compression.

Usage: parquet_read.py BUCKET PREFIX
"""
import io
import json
import os
import sys

import boto3
import pyarrow.parquet as pq

s3 = boto3.client(
    "s3",
    endpoint_url=os.environ["LAKESINK_S3_ENDPOINT"],
    aws_access_key_id=os.environ["LAKESINK_S3_KEY"],
    aws_secret_access_key=os.environ["LAKESINK_S3_SECRET"],
    region_name="us-east-1",
)
bucket, prefix = sys.argv[1], sys.argv[2]
keys = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    keys += [o["Key"] for o in page.get("Contents", []) if o["Key"].endswith(".parquet")]

out = {"files": len(keys), "rows": 0, "event_ids": 0, "max_row_groups": 0,
       "schemas": [], "leaves": {}, "bloom": {}, "compression": [], "created_by": [],
       "rows_by_key": {}}
ids = set()
for key in sorted(keys):
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    f = pq.ParquetFile(io.BytesIO(body))
    t = f.read()
    out["rows"] += t.num_rows
    out["rows_by_key"][key] = t.num_rows
    if "eventID" in t.column_names:
        ids.update(t.column("eventID").to_pylist())
    schema = str(t.schema.remove_metadata())
    if schema not in out["schemas"]:
        out["schemas"].append(schema)
    m = f.metadata
    out["max_row_groups"] = max(out["max_row_groups"], m.num_row_groups)
    if m.created_by not in out["created_by"]:
        out["created_by"].append(m.created_by)
    for i in range(f.schema.__len__()):
        c = f.schema.column(i)
        out["leaves"][c.path] = {"physical": c.physical_type, "logical": str(c.logical_type)}
    for g in range(m.num_row_groups):
        rg = m.row_group(g)
        for i in range(rg.num_columns):
            col = rg.column(i)
            if col.compression not in out["compression"]:
                out["compression"].append(col.compression)
            has = (col.bloom_filter_offset or 0) > 0
            out["bloom"][col.path_in_schema] = out["bloom"].get(col.path_in_schema, True) and has
            out["stats"] = out.get("stats", True) and col.is_stats_set
out["event_ids"] = len(ids)
print(json.dumps(out))
