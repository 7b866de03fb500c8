"""Bucket chores on the test S3 server: list-buckets | create-bucket NAME | list NAME PREFIX |
json NAME PREFIX (the bodies of the JSON objects under PREFIX, as one list: segment claims) |
delete NAME KEY | put NAME KEY TEXT | truncate NAME KEY N (drop the last N bytes) |
flip NAME KEY (alter one byte in the middle, same size) | dropline NAME KEY N (a gzip NDJSON object
rewritten without its line N): the damage `lakesink verify` must name | get NAME KEY FILE |
gzlines NAME KEY (lines of a gzip object, every member, by Python's gzip module)."""
import json
import os
import sys

import boto3

s3 = boto3.client(
    "s3",
    endpoint_url=os.environ["LAKESINK_S3_ENDPOINT"],
    aws_access_key_id=os.environ["LAKESINK_S3_KEY"],
    aws_secret_access_key=os.environ["LAKESINK_S3_SECRET"],
    region_name="us-east-1",
)
cmd = sys.argv[1]
if cmd == "list-buckets":
    print(json.dumps([b["Name"] for b in s3.list_buckets().get("Buckets", [])]))
elif cmd == "create-bucket":
    s3.create_bucket(Bucket=sys.argv[2])
elif cmd == "list":
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[2], Prefix=sys.argv[3]):
        for o in page.get("Contents", []):
            out.append({"key": o["Key"], "size": o["Size"], "etag": o["ETag"], "modified": o["LastModified"].isoformat()})
    print(json.dumps(out))
elif cmd == "json":
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[2], Prefix=sys.argv[3]):
        for o in page.get("Contents", []):
            if o["Key"].endswith(".json"):
                try:
                    body = s3.get_object(Bucket=sys.argv[2], Key=o["Key"])["Body"].read()
                except s3.exceptions.NoSuchKey:
                    # Deleted since the listing (a running daemon replaces manifests and, after
                    # a compaction's grace, deletes the old copies): as a reader sees it now.
                    continue
                out.append({"key": o["Key"], "body": json.loads(body)})
    print(json.dumps(out))
elif cmd == "delete":
    s3.delete_object(Bucket=sys.argv[2], Key=sys.argv[3])
elif cmd == "put":
    s3.put_object(Bucket=sys.argv[2], Key=sys.argv[3], Body=sys.argv[4].encode())
elif cmd == "get":
    with open(sys.argv[4], "wb") as f:
        f.write(s3.get_object(Bucket=sys.argv[2], Key=sys.argv[3])["Body"].read())
elif cmd == "gzlines":
    import gzip
    print(len(gzip.decompress(s3.get_object(Bucket=sys.argv[2], Key=sys.argv[3])["Body"].read()).splitlines()))
elif cmd == "dropline":
    import gzip
    body = gzip.decompress(s3.get_object(Bucket=sys.argv[2], Key=sys.argv[3])["Body"].read())
    lines = body.split(b"\n")
    del lines[int(sys.argv[4])]
    s3.put_object(Bucket=sys.argv[2], Key=sys.argv[3], Body=gzip.compress(b"\n".join(lines)))
elif cmd in ("truncate", "flip"):
    body = bytearray(s3.get_object(Bucket=sys.argv[2], Key=sys.argv[3])["Body"].read())
    if cmd == "truncate":
        body = body[: len(body) - int(sys.argv[4])]
    else:
        body[len(body) // 2] ^= 0xFF
    s3.put_object(Bucket=sys.argv[2], Key=sys.argv[3], Body=bytes(body))
else:
    sys.exit(f"unknown command {cmd}")
