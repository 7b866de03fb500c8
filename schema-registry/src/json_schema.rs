//! JSON Schema (draft 7 / 2019-09 / 2020-12 subset) to Arrow.
//!
//! | JSON Schema | Arrow |
//! |---|---|
//! | `object` with `properties` | `Struct`; a property not in `required` is nullable |
//! | `object` with only `additionalProperties: {schema}` | `Map<Utf8, …>` |
//! | `object` with neither (free-form) | `Utf8` holding the JSON text |
//! | `array` with `items` | `List` |
//! | `string` | `Utf8`; `format: date-time` → `Timestamp(µs, "UTC")`, `date` → `Date32` |
//! | `integer`, `number`, `boolean` | `Int64`, `Float64`, `Boolean` |
//! | `type: [T, "null"]`, `anyOf`/`oneOf` of T and `null` | `T`, nullable |
//! | `enum` of strings | `Utf8` |
//! | `$ref` to `#/definitions/…` or `#/$defs/…` | the referenced schema |
//!
//! Other unions and recursive references are refused with the path of the property.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, TimeUnit};
use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JsonSchemaError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("at `{path}`: {message}")]
    Schema { path: String, message: String },
}

fn err(path: &str, message: impl Into<String>) -> JsonSchemaError {
    JsonSchemaError::Schema {
        path: path.to_string(),
        message: message.into(),
    }
}

/// Converts a JSON Schema whose top level is an object with properties into an Arrow schema.
pub fn to_arrow(text: &str) -> Result<Schema, JsonSchemaError> {
    let root: Value =
        serde_json::from_str(text).map_err(|e| JsonSchemaError::Json(e.to_string()))?;
    let mut refs = Vec::new();
    match convert(&root, &root, "", &mut refs)? {
        (DataType::Struct(fields), _) => Ok(Schema::new(fields)),
        (other, _) => Err(err(
            "",
            format!("the top level must be an object with properties, not {other}"),
        )),
    }
}

/// The Arrow type of a schema and whether it admits null.
fn convert(
    v: &Value,
    root: &Value,
    path: &str,
    refs: &mut Vec<String>,
) -> Result<(DataType, bool), JsonSchemaError> {
    let Some(o) = v.as_object() else {
        return match v {
            // `true` admits anything: keep the JSON text.
            Value::Bool(true) => Ok((DataType::Utf8, true)),
            _ => Err(err(path, format!("not a schema: {v}"))),
        };
    };
    if let Some(r) = o.get("$ref").and_then(Value::as_str) {
        if refs.iter().any(|x| x == r) {
            return Err(err(
                path,
                format!("`{r}` refers to itself: recursive types have no Arrow form"),
            ));
        }
        let target = r
            .strip_prefix('#')
            .and_then(|p| root.pointer(p))
            .ok_or_else(|| err(path, format!("unresolvable $ref `{r}` (only local refs)")))?;
        refs.push(r.to_string());
        let out = convert(target, root, path, refs);
        refs.pop();
        return out;
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(branches) = o.get(key).and_then(Value::as_array) {
            let mut nullable = false;
            let mut others = Vec::new();
            for b in branches {
                if b.get("type").and_then(Value::as_str) == Some("null") {
                    nullable = true;
                } else {
                    others.push(b);
                }
            }
            return match others.as_slice() {
                [one] => {
                    let (dt, n) = convert(one, root, path, refs)?;
                    Ok((dt, n || nullable))
                }
                _ => Err(err(
                    path,
                    format!(
                        "`{key}` of {} non-null schemas has no column form",
                        others.len()
                    ),
                )),
            };
        }
    }
    if let Some(values) = o.get("enum").and_then(Value::as_array) {
        let nullable = values.iter().any(Value::is_null);
        if values.iter().all(|x| x.is_string() || x.is_null()) {
            return Ok((DataType::Utf8, nullable));
        }
        return Err(err(path, "an enum of non-string values"));
    }
    let (ty, nullable) = match o.get("type") {
        Some(Value::String(t)) => (t.as_str(), false),
        Some(Value::Array(ts)) => {
            let nullable = ts.iter().any(|t| t.as_str() == Some("null"));
            let others: Vec<&str> = ts
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect();
            match others.as_slice() {
                [one] => (*one, nullable),
                [] => ("null", true),
                _ => {
                    return Err(err(
                        path,
                        format!("a value of several types {others:?} has no column form"),
                    ))
                }
            }
        }
        // No type: anything goes, kept as JSON text (properties imply an object).
        _ if o.contains_key("properties") => ("object", false),
        _ => return Ok((DataType::Utf8, true)),
    };
    let dt = match ty {
        "null" => return Ok((DataType::Null, true)),
        "boolean" => DataType::Boolean,
        "integer" => DataType::Int64,
        "number" => DataType::Float64,
        "string" => match o.get("format").and_then(Value::as_str) {
            Some("date-time") => DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC"))),
            Some("date") => DataType::Date32,
            _ => DataType::Utf8,
        },
        "array" => {
            let items = o
                .get("items")
                .ok_or_else(|| err(path, "array without `items`"))?;
            let (it, n) = convert(items, root, &format!("{path}[]"), refs)?;
            DataType::List(Arc::new(Field::new("element", it, n)))
        }
        "object" => {
            if let Some(props) = o.get("properties").and_then(Value::as_object) {
                let required: Vec<&str> = o
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut fields = Vec::with_capacity(props.len());
                for (name, p) in props {
                    let ppath = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}.{name}")
                    };
                    let (pdt, pn) = convert(p, root, &ppath, refs)?;
                    fields.push(Field::new(
                        name,
                        pdt,
                        pn || !required.contains(&name.as_str()),
                    ));
                }
                DataType::Struct(Fields::from(fields))
            } else if let Some(values) = o.get("additionalProperties").filter(|a| a.is_object()) {
                let (vdt, vn) = convert(values, root, &format!("{path}{{}}"), refs)?;
                let entries = Field::new(
                    "key_value",
                    DataType::Struct(Fields::from(vec![
                        Field::new("key", DataType::Utf8, false),
                        Field::new("value", vdt, vn),
                    ])),
                    false,
                );
                DataType::Map(Arc::new(entries), false)
            } else {
                // A free-form object: its JSON text.
                DataType::Utf8
            }
        }
        other => return Err(err(path, format!("unknown type `{other}`"))),
    };
    Ok((dt, nullable))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_construct_maps_to_its_arrow_type() {
        let s = to_arrow(
            r##"{
              "$schema": "https://json-schema.org/draft/2020-12/schema",
              "type": "object",
              "required": ["id", "when", "nested", "tags"],
              "properties": {
                "id": {"type": "string"},
                "when": {"type": "string", "format": "date-time"},
                "day": {"type": "string", "format": "date"},
                "n": {"type": "integer"},
                "x": {"type": ["number", "null"]},
                "ok": {"type": "boolean"},
                "color": {"enum": ["red", "green"]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                "free": {"type": "object"},
                "anything": {},
                "maybe": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/inner"}]},
                "nested": {"$ref": "#/definitions/inner"}
              },
              "$defs": {"inner": {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}}},
              "definitions": {"inner": {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}}}
            }"##,
        )
        .unwrap();
        let f = |n: &str| {
            let f = s.field_with_name(n).unwrap();
            (f.data_type().clone(), f.is_nullable())
        };
        assert_eq!(f("id"), (DataType::Utf8, false));
        assert_eq!(
            f("when"),
            (
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false
            )
        );
        assert_eq!(f("day"), (DataType::Date32, true));
        assert_eq!(f("n"), (DataType::Int64, true));
        assert_eq!(f("x"), (DataType::Float64, true));
        assert_eq!(f("ok"), (DataType::Boolean, true));
        assert_eq!(f("color"), (DataType::Utf8, true));
        assert_eq!(
            f("tags"),
            (
                DataType::List(Arc::new(Field::new("element", DataType::Utf8, false))),
                false
            )
        );
        assert!(matches!(f("counts").0, DataType::Map(_, false)));
        assert_eq!(f("free"), (DataType::Utf8, true));
        assert_eq!(f("anything"), (DataType::Utf8, true));
        let inner = DataType::Struct(Fields::from(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, true),
        ]));
        assert_eq!(f("maybe"), (inner.clone(), true));
        assert_eq!(f("nested"), (inner, false));
    }

    #[test]
    fn unsupported_shapes_are_refused_with_their_path() {
        let e = to_arrow(
            r#"{"type":"object","properties":{"a":{"type":"object","properties":{"b":{"type":["string","integer"]}}}}}"#,
        )
        .unwrap_err();
        assert!(
            matches!(&e, JsonSchemaError::Schema { path, .. } if path == "a.b"),
            "{e}"
        );
        let e = to_arrow(
            r##"{"type":"object","properties":{"n":{"$ref":"#/$defs/node"}},"$defs":{"node":{"type":"object","properties":{"next":{"$ref":"#/$defs/node"}}}}}"##,
        )
        .unwrap_err();
        assert!(e.to_string().contains("refers to itself"), "{e}");
        assert!(to_arrow(r#"{"type":"string"}"#).is_err());
    }
}
