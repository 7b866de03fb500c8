"""Scrapes a Lakesink /metrics endpoint and prints its samples as JSON, parsed by the official
Prometheus client's OpenMetrics parser (independent of the daemon's encoder).

Usage: metrics_parse.py URL
Prints: [{"name": ..., "labels": {...}, "value": ...}, ...]; exits non-zero if it does not parse.
"""
import json
import sys
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families

with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
    ctype = r.headers.get("content-type", "")
    text = r.read().decode("utf-8")
if not ctype.startswith("application/openmetrics-text"):
    sys.exit(f"unexpected content-type {ctype!r}")
out = []
for family in text_string_to_metric_families(text):
    for s in family.samples:
        out.append({"name": s.name, "type": family.type, "labels": s.labels, "value": s.value})
print(json.dumps(out))
