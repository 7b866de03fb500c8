"""Container chores on the test Azure Blob server (Azurite), with Microsoft's own SDK as the
independent reader: create-container NAME | records NAME PREFIX (every gzip NDJSON blob under
PREFIX read back: {"files", "records", "ids", "keys"})."""
import gzip
import json
import os
import sys

from azure.storage.blob import BlobServiceClient

# Azurite's well-known development account (public, in Microsoft's documentation).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
service = BlobServiceClient.from_connection_string(
    f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
    f"BlobEndpoint={os.environ['LAKESINK_AZURITE_URL']}/{ACCOUNT};"
)
cmd = sys.argv[1]
if cmd == "create-container":
    service.create_container(sys.argv[2])
elif cmd == "records":
    container = service.get_container_client(sys.argv[2])
    keys, ids = [], []
    for blob in container.list_blobs(name_starts_with=sys.argv[3]):
        if not blob.name.endswith(".json.gz"):
            continue
        keys.append(blob.name)
        body = container.download_blob(blob.name).readall()
        for line in gzip.decompress(body).splitlines():
            ids.append(json.loads(line)["eventID"])
    print(json.dumps({"files": len(keys), "records": len(ids), "ids": len(set(ids)), "keys": keys}))
else:
    sys.exit(f"unknown command {cmd}")
