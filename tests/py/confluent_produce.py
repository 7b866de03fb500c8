"""Produces records with the official confluent-kafka serializers (Avro or JSON Schema) through
a schema registry, to partition 0 of a topic, and prints the source records as JSON.

Usage: confluent_produce.py BROKERS TOPIC REGISTRY USER:PASSWORD avro|json SCHEMA_FILE FIRST COUNT
Records: id "r{n}", eventTime (ms for Avro, RFC 3339 for JSON), and typed fields of every kind.
"""
import datetime
import decimal
import json
import sys
import uuid

from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

brokers, topic, url, auth, kind, schema_file, first, count = sys.argv[1:9]
first, count = int(first), int(count)
schema = open(schema_file).read()
client = SchemaRegistryClient({"url": url, "basic.auth.user.info": auth})
if kind == "avro":
    ser = AvroSerializer(client, schema)
else:
    ser = JSONSerializer(schema, client)
has_note = '"note"' in schema
producer = Producer({"bootstrap.servers": brokers, "acks": "all", "max.in.flight.requests.per.connection": 1})
base = datetime.datetime(2024, 1, 2, 1, 0, 0, tzinfo=datetime.timezone.utc)
out = []
for n in range(first, first + count):
    t = base + datetime.timedelta(seconds=7 * n, milliseconds=n % 1000)
    rec = {
        "id": f"r{n}",
        "region": ["us-east-1", "eu-west-1", "ap-south-1"][n % 3],
        "count": n * 1000003,
        "ok": n % 2 == 0,
        "tags": [f"t{n % 5}", "x"],
        "user": {"name": f"user-{n % 17}", "level": n % 4},
    }
    if kind == "avro":
        rec["eventTime"] = t
        rec["amount"] = decimal.Decimal(n * 7).scaleb(-2)
        rec["day"] = t.date()
        rec["uid"] = uuid.UUID(int=n)
        rec["attrs"] = {"a": n, "b": -n}
        rec["kind"] = ["READ", "WRITE"][n % 2]
    else:
        rec["eventTime"] = t.isoformat().replace("+00:00", "Z")
        rec["params"] = {"k": n, "nested": {"deep": [1, "two"]}}
    if has_note:
        rec["note"] = f"v2 record {n}"
    value = ser(rec, SerializationContext(topic, MessageField.VALUE))
    producer.produce(topic, value=value, partition=0)
    producer.poll(0)
    src = dict(rec)
    src["eventTime_ms"] = int(t.timestamp() * 1000)
    for k in ("eventTime", "amount", "day", "uid"):
        if k in src and not isinstance(src[k], (str, int)):
            src[k] = str(src[k])
    out.append(src)
assert producer.flush(60) == 0
print(json.dumps(out))
