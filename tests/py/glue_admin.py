"""AWS Glue checks against the test Glue endpoint (moto): partitions DATABASE TABLE [EXPRESSION] |
table DATABASE TABLE. An EXPRESSION filters partitions by value, as Athena's pruning asks Glue."""
import json
import os
import sys

import boto3

glue = boto3.client(
    "glue",
    endpoint_url=os.environ["LAKESINK_GLUE_ENDPOINT"],
    aws_access_key_id="testing",
    aws_secret_access_key="testing",
    region_name="us-east-1",
)
cmd, db, table = sys.argv[1], sys.argv[2], sys.argv[3]
if cmd == "partitions":
    out = []
    kwargs = {"Expression": sys.argv[4]} if len(sys.argv) > 4 else {}
    for page in glue.get_paginator("get_partitions").paginate(DatabaseName=db, TableName=table, **kwargs):
        for p in page["Partitions"]:
            sd = p.get("StorageDescriptor", {})
            out.append({
                "values": p["Values"],
                "location": sd.get("Location"),
                "serde": sd.get("SerdeInfo", {}).get("SerializationLibrary"),
                "input_format": sd.get("InputFormat"),
                "parameters": p.get("Parameters", {}),
            })
    print(json.dumps(out))
elif cmd == "table":
    t = glue.get_table(DatabaseName=db, Name=table)["Table"]
    print(json.dumps({
        "partition_keys": [{"name": k["Name"], "type": k["Type"]} for k in t.get("PartitionKeys", [])],
        "location": t["StorageDescriptor"].get("Location"),
        "serde": t["StorageDescriptor"].get("SerdeInfo", {}).get("SerializationLibrary"),
    }))
else:
    sys.exit(f"unknown command {cmd}")
