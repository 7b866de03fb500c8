//! Avro schemas (`.avsc`, or a registry's `schema` string) to Arrow.
//!
//! | Avro | Arrow |
//! |---|---|
//! | `null`, `boolean`, `int`, `long`, `float`, `double` | `Null`, `Boolean`, `Int32`, `Int64`, `Float32`, `Float64` |
//! | `bytes`, `fixed` | `Binary`, `FixedSizeBinary(n)` |
//! | `string`, `enum`, `uuid` | `Utf8` |
//! | `record` | `Struct` |
//! | `array`, `map` | `List`, `Map<Utf8, …>` |
//! | `["null", T]` (either order) | `T`, nullable |
//! | `date`, `time-millis`, `time-micros` | `Date32`, `Time32(ms)`, `Time64(µs)` |
//! | `timestamp-millis`, `timestamp-micros` | `Timestamp(ms/µs, "UTC")` (Parquet: `isAdjustedToUTC = true`) |
//! | `local-timestamp-millis`, `local-timestamp-micros` | `Timestamp(ms/µs)` without a zone |
//! | `decimal` on `bytes` or `fixed` | `Decimal128(p, s)`, `Decimal256` above 38 digits |
//!
//! Named types (records, enums, fixed) may be referenced by name after their definition.
//! Other unions and recursive types are refused with the path of the field.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AvroError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("at `{path}`: {message}")]
    Schema { path: String, message: String },
}

/// Converts an Avro schema whose top level is a record into an Arrow schema.
pub fn to_arrow(avsc: &str) -> Result<Schema, AvroError> {
    let v: Value = serde_json::from_str(avsc).map_err(|e| AvroError::Json(e.to_string()))?;
    let mut c = Converter::default();
    let (dt, _) = c.convert(&v, "", None)?;
    match dt {
        DataType::Struct(fields) => Ok(Schema::new(fields)),
        other => Err(AvroError::Schema {
            path: String::new(),
            message: format!("the top level must be a record, not {other}"),
        }),
    }
}

#[derive(Default)]
struct Converter {
    /// Named types by full name (and by short name), once defined.
    named: HashMap<String, DataType>,
    /// Records being defined (a reference to one of them is recursion).
    defining: Vec<String>,
}

fn err(path: &str, message: impl Into<String>) -> AvroError {
    AvroError::Schema {
        path: path.to_string(),
        message: message.into(),
    }
}

impl Converter {
    /// Returns the Arrow type and whether the Avro type admits null.
    fn convert(
        &mut self,
        v: &Value,
        path: &str,
        namespace: Option<&str>,
    ) -> Result<(DataType, bool), AvroError> {
        match v {
            Value::String(name) => self.named_or_primitive(name, path, namespace),
            Value::Array(branches) => self.union(branches, path, namespace),
            Value::Object(o) => {
                let ty = o
                    .get("type")
                    .ok_or_else(|| err(path, "a type object without `type`"))?;
                if let Some(logical) = o.get("logicalType").and_then(Value::as_str) {
                    if let Some(dt) = logical_type(logical, o, path)? {
                        return Ok((dt, false));
                    }
                    // Unknown logical types fall back to the underlying type (Avro spec).
                }
                match ty.as_str() {
                    Some("record") | Some("error") => self.record(o, path, namespace),
                    Some("enum") => {
                        self.define(o, namespace, DataType::Utf8, path)?;
                        Ok((DataType::Utf8, false))
                    }
                    Some("fixed") => {
                        let size = o
                            .get("size")
                            .and_then(Value::as_i64)
                            .ok_or_else(|| err(path, "fixed without `size`"))?;
                        let dt = DataType::FixedSizeBinary(size as i32);
                        self.define(o, namespace, dt.clone(), path)?;
                        Ok((dt, false))
                    }
                    Some("array") => {
                        let items = o
                            .get("items")
                            .ok_or_else(|| err(path, "array without `items`"))?;
                        let (dt, nullable) =
                            self.convert(items, &format!("{path}[]"), namespace)?;
                        Ok((
                            DataType::List(Arc::new(Field::new("element", dt, nullable))),
                            false,
                        ))
                    }
                    Some("map") => {
                        let values = o
                            .get("values")
                            .ok_or_else(|| err(path, "map without `values`"))?;
                        let (dt, nullable) =
                            self.convert(values, &format!("{path}{{}}"), namespace)?;
                        let entries = Field::new(
                            "key_value",
                            DataType::Struct(Fields::from(vec![
                                Field::new("key", DataType::Utf8, false),
                                Field::new("value", dt, nullable),
                            ])),
                            false,
                        );
                        Ok((DataType::Map(Arc::new(entries), false), false))
                    }
                    _ => self.convert(ty, path, namespace),
                }
            }
            other => Err(err(path, format!("not an Avro schema: {other}"))),
        }
    }

    fn named_or_primitive(
        &self,
        name: &str,
        path: &str,
        namespace: Option<&str>,
    ) -> Result<(DataType, bool), AvroError> {
        let dt = match name {
            "null" => return Ok((DataType::Null, true)),
            "boolean" => DataType::Boolean,
            "int" => DataType::Int32,
            "long" => DataType::Int64,
            "float" => DataType::Float32,
            "double" => DataType::Float64,
            "bytes" => DataType::Binary,
            "string" => DataType::Utf8,
            _ => {
                let full = full_name(name, namespace);
                if self.defining.contains(&full) || self.defining.iter().any(|d| d == name) {
                    return Err(err(
                        path,
                        format!("`{name}` refers to itself: recursive types have no Arrow form"),
                    ));
                }
                return self
                    .named
                    .get(&full)
                    .or_else(|| self.named.get(name))
                    .cloned()
                    .map(|dt| (dt, false))
                    .ok_or_else(|| err(path, format!("unknown type `{name}`")));
            }
        };
        Ok((dt, false))
    }

    fn union(
        &mut self,
        branches: &[Value],
        path: &str,
        namespace: Option<&str>,
    ) -> Result<(DataType, bool), AvroError> {
        let mut nullable = false;
        let mut others = Vec::new();
        for b in branches {
            if b.as_str() == Some("null") {
                nullable = true;
            } else {
                others.push(b);
            }
        }
        match others.as_slice() {
            [] => Ok((DataType::Null, true)),
            [one] => {
                let (dt, inner) = self.convert(one, path, namespace)?;
                Ok((dt, nullable || inner))
            }
            _ => Err(err(
                path,
                format!(
                    "a union of {} types other than null has no column form; use one type (or a string holding JSON)",
                    others.len()
                ),
            )),
        }
    }

    fn record(
        &mut self,
        o: &serde_json::Map<String, Value>,
        path: &str,
        namespace: Option<&str>,
    ) -> Result<(DataType, bool), AvroError> {
        let name = o
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| err(path, "record without `name`"))?;
        let ns = o
            .get("namespace")
            .and_then(Value::as_str)
            .or(namespace)
            .map(str::to_string);
        let full = full_name(name, ns.as_deref());
        self.defining.push(full.clone());
        let mut fields = Vec::new();
        for f in o
            .get("fields")
            .and_then(Value::as_array)
            .ok_or_else(|| err(path, "record without `fields`"))?
        {
            let fname = f
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| err(path, "field without `name`"))?;
            let fpath = if path.is_empty() {
                fname.to_string()
            } else {
                format!("{path}.{fname}")
            };
            let ty = f
                .get("type")
                .ok_or_else(|| err(&fpath, "field without `type`"))?;
            let (dt, nullable) = self.convert(ty, &fpath, ns.as_deref())?;
            fields.push(Field::new(fname, dt, nullable));
        }
        self.defining.pop();
        let dt = DataType::Struct(Fields::from(fields));
        self.define(o, ns.as_deref(), dt.clone(), path)?;
        Ok((dt, false))
    }

    fn define(
        &mut self,
        o: &serde_json::Map<String, Value>,
        namespace: Option<&str>,
        dt: DataType,
        path: &str,
    ) -> Result<(), AvroError> {
        let name = o
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| err(path, "a named type without `name`"))?;
        let ns = o.get("namespace").and_then(Value::as_str).or(namespace);
        self.named.insert(full_name(name, ns), dt.clone());
        self.named.entry(name.to_string()).or_insert(dt);
        Ok(())
    }
}

pub(crate) fn full_name(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if !name.contains('.') && !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_string(),
    }
}

fn logical_type(
    logical: &str,
    o: &serde_json::Map<String, Value>,
    path: &str,
) -> Result<Option<DataType>, AvroError> {
    let base = o.get("type").and_then(Value::as_str).unwrap_or_default();
    let utc = || Some(Arc::from("UTC"));
    Ok(match (logical, base) {
        ("date", "int") => Some(DataType::Date32),
        ("time-millis", "int") => Some(DataType::Time32(TimeUnit::Millisecond)),
        ("time-micros", "long") => Some(DataType::Time64(TimeUnit::Microsecond)),
        ("timestamp-millis", "long") => Some(DataType::Timestamp(TimeUnit::Millisecond, utc())),
        ("timestamp-micros", "long") => Some(DataType::Timestamp(TimeUnit::Microsecond, utc())),
        ("local-timestamp-millis", "long") => {
            Some(DataType::Timestamp(TimeUnit::Millisecond, None))
        }
        ("local-timestamp-micros", "long") => {
            Some(DataType::Timestamp(TimeUnit::Microsecond, None))
        }
        ("uuid", "string") => Some(DataType::Utf8),
        ("decimal", "bytes") | ("decimal", "fixed") => {
            let precision = o
                .get("precision")
                .and_then(Value::as_u64)
                .ok_or_else(|| err(path, "decimal without `precision`"))?;
            let scale = o.get("scale").and_then(Value::as_i64).unwrap_or(0);
            if precision == 0 || scale < 0 || scale as u64 > precision {
                return Err(err(
                    path,
                    format!("decimal({precision}, {scale}) is not a valid decimal"),
                ));
            }
            Some(if precision <= 38 {
                DataType::Decimal128(precision as u8, scale as i8)
            } else if precision <= 76 {
                DataType::Decimal256(precision as u8, scale as i8)
            } else {
                return Err(err(
                    path,
                    format!("decimal precision {precision} is above 76"),
                ));
            })
        }
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(schema: &Schema, name: &str) -> Field {
        schema.field_with_name(name).unwrap().clone()
    }

    #[test]
    fn every_type_maps_to_its_arrow_type() {
        let s = to_arrow(
            r#"{"type": "record", "name": "All", "namespace": "t", "fields": [
              {"name": "b", "type": "boolean"},
              {"name": "i", "type": "int"},
              {"name": "l", "type": "long"},
              {"name": "f", "type": "float"},
              {"name": "d", "type": "double"},
              {"name": "by", "type": "bytes"},
              {"name": "s", "type": "string"},
              {"name": "n", "type": ["null", "string"]},
              {"name": "n2", "type": ["long", "null"]},
              {"name": "e", "type": {"type": "enum", "name": "Color", "symbols": ["R", "G"]}},
              {"name": "e2", "type": "Color"},
              {"name": "fx", "type": {"type": "fixed", "name": "Md5", "size": 16}},
              {"name": "a", "type": {"type": "array", "items": ["null", "int"]}},
              {"name": "m", "type": {"type": "map", "values": "long"}},
              {"name": "r", "type": {"type": "record", "name": "Inner", "fields": [
                  {"name": "x", "type": "string"}]}},
              {"name": "r2", "type": ["null", "t.Inner"]},
              {"name": "date", "type": {"type": "int", "logicalType": "date"}},
              {"name": "tms", "type": {"type": "int", "logicalType": "time-millis"}},
              {"name": "tus", "type": {"type": "long", "logicalType": "time-micros"}},
              {"name": "tsm", "type": {"type": "long", "logicalType": "timestamp-millis"}},
              {"name": "tsu", "type": {"type": "long", "logicalType": "timestamp-micros"}},
              {"name": "lts", "type": {"type": "long", "logicalType": "local-timestamp-micros"}},
              {"name": "dec", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
              {"name": "dec2", "type": {"type": "fixed", "name": "Big", "size": 32, "logicalType": "decimal", "precision": 60, "scale": 4}},
              {"name": "u", "type": {"type": "string", "logicalType": "uuid"}},
              {"name": "odd", "type": {"type": "string", "logicalType": "something-else"}}
            ]}"#,
        )
        .unwrap();
        let expect = |name: &str, dt: DataType, nullable: bool| {
            let f = field(&s, name);
            assert_eq!((f.data_type(), f.is_nullable()), (&dt, nullable), "{name}");
        };
        expect("b", DataType::Boolean, false);
        expect("i", DataType::Int32, false);
        expect("l", DataType::Int64, false);
        expect("f", DataType::Float32, false);
        expect("d", DataType::Float64, false);
        expect("by", DataType::Binary, false);
        expect("s", DataType::Utf8, false);
        expect("n", DataType::Utf8, true);
        expect("n2", DataType::Int64, true);
        expect("e", DataType::Utf8, false);
        expect("e2", DataType::Utf8, false);
        expect("fx", DataType::FixedSizeBinary(16), false);
        expect(
            "a",
            DataType::List(Arc::new(Field::new("element", DataType::Int32, true))),
            false,
        );
        let m = field(&s, "m");
        match m.data_type() {
            DataType::Map(entries, false) => match entries.data_type() {
                DataType::Struct(kv) => {
                    assert_eq!(kv[0].data_type(), &DataType::Utf8);
                    assert!(!kv[0].is_nullable());
                    assert_eq!(kv[1].data_type(), &DataType::Int64);
                }
                other => panic!("{other}"),
            },
            other => panic!("{other}"),
        }
        let inner = DataType::Struct(Fields::from(vec![Field::new("x", DataType::Utf8, false)]));
        expect("r", inner.clone(), false);
        expect("r2", inner, true);
        expect("date", DataType::Date32, false);
        expect("tms", DataType::Time32(TimeUnit::Millisecond), false);
        expect("tus", DataType::Time64(TimeUnit::Microsecond), false);
        expect(
            "tsm",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        );
        expect(
            "tsu",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        );
        expect(
            "lts",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        );
        expect("dec", DataType::Decimal128(10, 2), false);
        expect("dec2", DataType::Decimal256(60, 4), false);
        expect("u", DataType::Utf8, false);
        expect("odd", DataType::Utf8, false);
    }

    #[test]
    fn unsupported_shapes_are_refused_with_their_path() {
        let e = to_arrow(
            r#"{"type":"record","name":"R","fields":[{"name":"x","type":{"type":"record","name":"S","fields":[{"name":"y","type":["int","string"]}]}}]}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&e, AvroError::Schema { path, .. } if path == "x.y"),
            "{e}"
        );
        let e = to_arrow(
            r#"{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("refers to itself"), "{e}");
        let e = to_arrow(r#"{"type":"record","name":"R","fields":[{"name":"x","type":"Nope"}]}"#)
            .unwrap_err();
        assert!(e.to_string().contains("unknown type `Nope`"), "{e}");
        assert!(to_arrow(r#""string""#).is_err());
        assert!(to_arrow("{").is_err());
    }

    #[test]
    fn the_shipped_cloudtrail_schema_converts() {
        let s = to_arrow(include_str!("../schemas/cloudtrail.avsc")).unwrap();
        let t = field(&s, "eventTime");
        assert_eq!(
            t.data_type(),
            &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
        );
        assert!(!t.is_nullable());
        assert!(matches!(
            field(&s, "userIdentity").data_type(),
            DataType::Struct(_)
        ));
        assert_eq!(field(&s, "requestParameters").data_type(), &DataType::Utf8);
        assert!(field(&s, "errorCode").is_nullable());
        assert!(matches!(
            field(&s, "resources").data_type(),
            DataType::List(_)
        ));
    }
}
