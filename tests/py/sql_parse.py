"""Parses CREATE TABLE statements with sqlglot in a dialect and prints what it understood as
JSON: one object per statement with the table, its columns and its properties.

Usage: sql_parse.py DIALECT FILE
"""
import json
import sys

import sqlglot
from sqlglot import exp

dialect, path = sys.argv[1], sys.argv[2]
out = []
for stmt in sqlglot.parse(open(path).read(), read=dialect, error_level=sqlglot.ErrorLevel.RAISE):
    if stmt is None:
        continue
    assert isinstance(stmt, exp.Create), f"not a CREATE: {stmt.sql(dialect)}"
    table = stmt.find(exp.Table)
    schema = stmt.this if isinstance(stmt.this, exp.Schema) else None
    columns = [c.name for c in schema.expressions] if schema else []
    props = {}
    for p in stmt.find_all(exp.Property):
        key = p.name if isinstance(p, exp.Property) and p.args.get("this") is not None else p.key
        value = p.args.get("value")
        props[str(key)] = value.sql(dialect) if value is not None else p.sql(dialect)
    out.append({"table": table.name, "db": table.db, "kind": stmt.kind,
                "columns": columns, "properties": props})
print(json.dumps(out))
