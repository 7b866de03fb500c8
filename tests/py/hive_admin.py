"""Hive Metastore checks through an independent Thrift client (hmsclient):
partitions DATABASE TABLE [FILTER] | table DATABASE TABLE | ping. The metastore is at
LAKESINK_HIVE_URI. A FILTER (`region = "us/east"`) selects partitions by value, as a query's
pruning asks the metastore."""
import json
import os
import sys
from urllib.parse import urlparse

from hmsclient import hmsclient

uri = urlparse(os.environ["LAKESINK_HIVE_URI"])
client = hmsclient.HMSClient(host=uri.hostname, port=uri.port)
cmd = sys.argv[1]
with client as c:
    if cmd == "ping":
        print(json.dumps(c.get_all_databases()))
    elif cmd == "partitions":
        if len(sys.argv) > 4:
            parts = c.get_partitions_by_filter(sys.argv[2], sys.argv[3], sys.argv[4], -1)
        else:
            parts = c.get_partitions(sys.argv[2], sys.argv[3], -1)
        print(json.dumps([
            {"values": p.values, "location": p.sd.location, "serde": p.sd.serdeInfo.serializationLib,
             "input_format": p.sd.inputFormat, "parameters": dict(p.parameters or {})}
            for p in parts
        ]))
    elif cmd == "table":
        t = c.get_table(sys.argv[2], sys.argv[3])
        print(json.dumps({
            "partition_keys": [{"name": k.name, "type": k.type} for k in t.partitionKeys],
            "location": t.sd.location,
            "serde": t.sd.serdeInfo.serializationLib,
            "table_type": t.tableType,
        }))
    else:
        sys.exit(f"unknown command {cmd}")
