//! The Confluent wire format: magic byte 0, a 4-byte big-endian schema id, then the payload
//! (Avro binary, or JSON text for JSON Schema), and Avro binary decoded to JSON text.
//!
//! Avro records are turned into the JSON the rest of the pipeline reads (routing by a field,
//! Parquet through arrow-json, gzip NDJSON as is): records as objects, unions as their branch's
//! value, enums and uuids as strings, `bytes`/`fixed` as hex (arrow-json's encoding of binary),
//! decimals as exact decimal numbers, `date` as days and timestamps as numbers in their unit
//! (which the Arrow column of that logical type takes as is), NaN and infinities as null.

use std::collections::HashMap;

use serde_json::Value;

use crate::avro::full_name;

/// Splits a Confluent-framed value into its schema id and payload; `None` if it is not framed
/// (a JSON document never starts with byte 0).
pub fn split(value: &[u8]) -> Option<(u32, &[u8])> {
    match value {
        [0, a, b, c, d, rest @ ..] => Some((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("Avro schema: {0}")]
    Schema(String),
    #[error("Avro data at byte {at}: {message}")]
    Data { at: usize, message: String },
}

/// A compiled Avro schema that decodes binary data to JSON text.
#[derive(Debug, Clone)]
pub struct AvroDecoder {
    pub(crate) root: Node,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed(usize),
    Decimal { fixed: Option<usize>, scale: u32 },
    Enum(Vec<String>),
    Array(Box<Node>),
    Map(Box<Node>),
    Union(Vec<Node>),
    Record(Vec<(String, Node)>),
}

impl AvroDecoder {
    pub fn new(schema: &str) -> Result<AvroDecoder, WireError> {
        let v: Value =
            serde_json::from_str(schema).map_err(|e| WireError::Schema(e.to_string()))?;
        let mut named = HashMap::new();
        let root = compile(&v, None, &mut named, 0)?;
        Ok(AvroDecoder { root })
    }

    /// Appends the JSON text of one Avro datum to `out`; the datum must use all of `data`.
    pub fn to_json(&self, data: &[u8], out: &mut String) -> Result<(), WireError> {
        let mut r = Reader { data, at: 0 };
        decode(&self.root, &mut r, out)?;
        if r.at != data.len() {
            return Err(WireError::Data {
                at: r.at,
                message: format!("{} bytes left after the datum", data.len() - r.at),
            });
        }
        Ok(())
    }
}

fn schema_err(m: impl Into<String>) -> WireError {
    WireError::Schema(m.into())
}

fn compile(
    v: &Value,
    ns: Option<&str>,
    named: &mut HashMap<String, Node>,
    depth: usize,
) -> Result<Node, WireError> {
    if depth > 64 {
        return Err(schema_err("nested too deep (recursive?)"));
    }
    match v {
        Value::String(t) => Ok(match t.as_str() {
            "null" => Node::Null,
            "boolean" => Node::Boolean,
            "int" => Node::Int,
            "long" => Node::Long,
            "float" => Node::Float,
            "double" => Node::Double,
            "bytes" => Node::Bytes,
            "string" => Node::String,
            other => named
                .get(&full_name(other, ns))
                .or_else(|| named.get(other))
                .cloned()
                .ok_or_else(|| schema_err(format!("unknown type `{other}`")))?,
        }),
        Value::Array(branches) => Ok(Node::Union(
            branches
                .iter()
                .map(|b| compile(b, ns, named, depth + 1))
                .collect::<Result<_, _>>()?,
        )),
        Value::Object(o) => {
            let t = o
                .get("type")
                .ok_or_else(|| schema_err("an object without `type`"))?;
            let logical = o.get("logicalType").and_then(Value::as_str);
            let name = o.get("name").and_then(Value::as_str);
            let own_ns = o.get("namespace").and_then(Value::as_str).or(ns);
            let node = match t.as_str() {
                Some("record") | Some("error") => {
                    let name = name.ok_or_else(|| schema_err("a record without a name"))?;
                    let full = full_name(name, own_ns);
                    let inner_ns = full.rsplit_once('.').map(|(n, _)| n.to_string());
                    let mut fields = Vec::new();
                    for f in o
                        .get("fields")
                        .and_then(Value::as_array)
                        .ok_or_else(|| schema_err(format!("record `{full}` has no fields")))?
                    {
                        let fname = f
                            .get("name")
                            .and_then(Value::as_str)
                            .ok_or_else(|| schema_err("a field without a name"))?;
                        let ft = f
                            .get("type")
                            .ok_or_else(|| schema_err(format!("field `{fname}` has no type")))?;
                        fields.push((
                            fname.to_string(),
                            compile(ft, inner_ns.as_deref(), named, depth + 1)?,
                        ));
                    }
                    let node = Node::Record(fields);
                    named.insert(full.clone(), node.clone());
                    named.insert(name.to_string(), node.clone());
                    return Ok(node);
                }
                Some("enum") => Node::Enum(
                    o.get("symbols")
                        .and_then(Value::as_array)
                        .ok_or_else(|| schema_err("an enum without symbols"))?
                        .iter()
                        .map(|s| s.as_str().unwrap_or_default().to_string())
                        .collect(),
                ),
                Some("array") => Node::Array(Box::new(compile(
                    o.get("items")
                        .ok_or_else(|| schema_err("an array without items"))?,
                    own_ns,
                    named,
                    depth + 1,
                )?)),
                Some("map") => Node::Map(Box::new(compile(
                    o.get("values")
                        .ok_or_else(|| schema_err("a map without values"))?,
                    own_ns,
                    named,
                    depth + 1,
                )?)),
                Some("fixed") => {
                    let size = o
                        .get("size")
                        .and_then(Value::as_u64)
                        .ok_or_else(|| schema_err("a fixed without size"))?
                        as usize;
                    if logical == Some("decimal") {
                        Node::Decimal {
                            fixed: Some(size),
                            scale: o.get("scale").and_then(Value::as_u64).unwrap_or(0) as u32,
                        }
                    } else {
                        Node::Fixed(size)
                    }
                }
                Some("bytes") if logical == Some("decimal") => Node::Decimal {
                    fixed: None,
                    scale: o.get("scale").and_then(Value::as_u64).unwrap_or(0) as u32,
                },
                // Other logical types keep their underlying encoding.
                _ => compile(t, own_ns, named, depth + 1)?,
            };
            if let (Some(name), Some("enum" | "fixed")) = (name, t.as_str()) {
                named.insert(full_name(name, own_ns), node.clone());
                named.insert(name.to_string(), node.clone());
            }
            Ok(node)
        }
        other => Err(schema_err(format!("not a schema: {other}"))),
    }
}

pub(crate) struct Reader<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) at: usize,
}

impl Reader<'_> {
    pub(crate) fn err(&self, m: impl Into<String>) -> WireError {
        WireError::Data {
            at: self.at,
            message: m.into(),
        }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&[u8], WireError> {
        if self.data.len() - self.at < n {
            return Err(self.err(format!("needs {n} more bytes")));
        }
        let s = &self.data[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    pub(crate) fn long(&mut self) -> Result<i64, WireError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok((v >> 1) as i64 ^ -((v & 1) as i64));
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    /// Reads a union's branch index and returns that branch.
    pub(crate) fn branch<'n>(&mut self, branches: &'n [Node]) -> Result<&'n Node, WireError> {
        let i = self.long()?;
        usize::try_from(i)
            .ok()
            .and_then(|i| branches.get(i))
            .ok_or_else(|| self.err(format!("union branch {i} out of range")))
    }

    pub(crate) fn len(&mut self) -> Result<usize, WireError> {
        let n = self.long()?;
        usize::try_from(n).map_err(|_| self.err(format!("negative length {n}")))
    }
}

pub(crate) fn decode(node: &Node, r: &mut Reader<'_>, out: &mut String) -> Result<(), WireError> {
    use std::fmt::Write;
    match node {
        Node::Null => out.push_str("null"),
        Node::Boolean => out.push_str(if r.take(1)?[0] != 0 { "true" } else { "false" }),
        Node::Int | Node::Long => {
            let v = r.long()?;
            let _ = write!(out, "{v}");
        }
        Node::Float => {
            let v = f32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes"));
            number(v as f64, out);
        }
        Node::Double => {
            let v = f64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
            number(v, out);
        }
        Node::Bytes => {
            let n = r.len()?;
            hex(r.take(n)?, out);
        }
        Node::Fixed(n) => hex(r.take(*n)?, out),
        Node::String => {
            let n = r.len()?;
            let at = r.at;
            let s = std::str::from_utf8(r.take(n)?).map_err(|e| WireError::Data {
                at,
                message: format!("string is not UTF-8: {e}"),
            })?;
            write_json_string(s, out);
        }
        Node::Decimal { fixed, scale } => {
            let v = crate::avro_arrow::decimal_value(*fixed, r)?;
            decimal(v, *scale, out);
        }
        Node::Enum(symbols) => {
            let i = r.long()?;
            let s = usize::try_from(i)
                .ok()
                .and_then(|i| symbols.get(i))
                .ok_or_else(|| r.err(format!("enum index {i} out of range")))?;
            write_json_string(s, out);
        }
        Node::Array(items) => {
            out.push('[');
            let mut first = true;
            blocks(r, |r| {
                if !std::mem::take(&mut first) {
                    out.push(',');
                }
                decode(items, r, out)
            })?;
            out.push(']');
        }
        Node::Map(values) => {
            out.push('{');
            let mut first = true;
            blocks(r, |r| {
                if !std::mem::take(&mut first) {
                    out.push(',');
                }
                let n = r.len()?;
                let key = String::from_utf8_lossy(r.take(n)?).into_owned();
                write_json_string(&key, out);
                out.push(':');
                decode(values, r, out)
            })?;
            out.push('}');
        }
        Node::Union(branches) => {
            let b = r.branch(branches)?;
            decode(b, r, out)?;
        }
        Node::Record(fields) => {
            out.push('{');
            for (i, (name, f)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(name, out);
                out.push(':');
                decode(f, r, out)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// Reads Avro array/map blocks, calling `item` once per element.
pub(crate) fn blocks(
    r: &mut Reader<'_>,
    mut item: impl FnMut(&mut Reader<'_>) -> Result<(), WireError>,
) -> Result<(), WireError> {
    loop {
        let mut n = r.long()?;
        if n == 0 {
            return Ok(());
        }
        if n < 0 {
            n = -n;
            r.long()?; // the block's size in bytes
        }
        for _ in 0..n {
            item(r)?;
        }
    }
}

fn number(v: f64, out: &mut String) {
    use std::fmt::Write;
    if v.is_finite() {
        let _ = write!(out, "{v}");
    } else {
        out.push_str("null");
    }
}

fn decimal(v: i128, scale: u32, out: &mut String) {
    let digits = v.unsigned_abs().to_string();
    if v < 0 {
        out.push('-');
    }
    let scale = scale as usize;
    if scale == 0 {
        out.push_str(&digits);
    } else if digits.len() > scale {
        out.push_str(&digits[..digits.len() - scale]);
        out.push('.');
        out.push_str(&digits[digits.len() - scale..]);
    } else {
        out.push_str("0.");
        out.push_str(&"0".repeat(scale - digits.len()));
        out.push_str(&digits);
    }
}

fn hex(b: &[u8], out: &mut String) {
    const H: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for x in b {
        out.push(H[(x >> 4) as usize] as char);
        out.push(H[(x & 15) as usize] as char);
    }
    out.push('"');
}

/// Appends `s` as a JSON string literal (quotes, escapes) to `out`.
pub fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => out.push_str(&format!("\\u{b:04x}")),
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::avro_write::long as zz;

    fn s(x: &str, out: &mut Vec<u8>) {
        zz(x.len() as i64, out);
        out.extend_from_slice(x.as_bytes());
    }

    #[test]
    fn framing_is_split_and_plain_json_is_not() {
        assert_eq!(split(&[0, 0, 0, 1, 2, b'x']), Some((258, &b"x"[..])));
        assert_eq!(split(b"{\"a\":1}"), None);
        assert_eq!(split(&[0, 1]), None);
    }

    #[test]
    fn every_avro_type_decodes_to_the_json_arrow_reads() {
        let schema = r#"{"type":"record","name":"R","namespace":"n","fields":[
            {"name":"b","type":"boolean"},
            {"name":"i","type":"int"},
            {"name":"l","type":"long"},
            {"name":"f","type":"float"},
            {"name":"d","type":"double"},
            {"name":"by","type":"bytes"},
            {"name":"s","type":"string"},
            {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}},
            {"name":"a","type":{"type":"array","items":"long"}},
            {"name":"m","type":{"type":"map","values":"string"}},
            {"name":"u","type":["null","string"]},
            {"name":"u2","type":["null","string"]},
            {"name":"fx","type":{"type":"fixed","name":"F","size":2}},
            {"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2}},
            {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},
            {"name":"dt","type":{"type":"int","logicalType":"date"}},
            {"name":"id","type":{"type":"string","logicalType":"uuid"}},
            {"name":"inner","type":{"type":"record","name":"In","fields":[{"name":"x","type":"E"}]}},
            {"name":"again","type":"In"}
        ]}"#;
        let mut b = Vec::new();
        b.push(1);
        zz(-3, &mut b);
        zz(1_704_157_323_000, &mut b);
        b.extend_from_slice(&1.5f32.to_le_bytes());
        b.extend_from_slice(&(-0.25f64).to_le_bytes());
        zz(2, &mut b);
        b.extend_from_slice(&[0xde, 0xad]);
        s("he said \"hi\"\n", &mut b);
        zz(1, &mut b);
        // array: one block of 2, then a block given with its byte size (negative count)
        zz(2, &mut b);
        zz(7, &mut b);
        zz(-8, &mut b);
        zz(-1, &mut b);
        zz(1, &mut b);
        zz(9, &mut b);
        zz(0, &mut b);
        zz(1, &mut b);
        s("k", &mut b);
        s("v", &mut b);
        zz(0, &mut b);
        zz(0, &mut b); // u: null
        zz(1, &mut b); // u2: string
        s("x", &mut b);
        b.extend_from_slice(&[1, 2]);
        zz(2, &mut b);
        b.extend_from_slice(&(-12345i16).to_be_bytes()); // -123.45
        zz(1_704_157_323_456, &mut b);
        zz(19_724, &mut b);
        s("0b6a9e5e-1a2b-4c3d-8e9f-000000000001", &mut b);
        zz(0, &mut b);
        zz(1, &mut b);
        let d = AvroDecoder::new(schema).unwrap();
        let mut out = String::new();
        d.to_json(&b, &mut out).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "b": true, "i": -3, "l": 1_704_157_323_000i64, "f": 1.5, "d": -0.25,
                "by": "dead", "s": "he said \"hi\"\n", "e": "B", "a": [7, -8, 9],
                "m": {"k": "v"}, "u": null, "u2": "x", "fx": "0102", "dec": -123.45,
                "ts": 1_704_157_323_456i64, "dt": 19_724,
                "id": "0b6a9e5e-1a2b-4c3d-8e9f-000000000001",
                "inner": {"x": "A"}, "again": {"x": "B"}
            })
        );
        assert!(out.contains("\"dec\":-123.45"), "exact decimal text: {out}");
        // Truncated data is an error naming the byte, not a panic.
        let e = d
            .to_json(&b[..b.len() - 3], &mut String::new())
            .unwrap_err();
        assert!(matches!(e, WireError::Data { .. }), "{e}");
        // Trailing bytes too.
        let mut longer = b.clone();
        longer.push(0);
        assert!(d.to_json(&longer, &mut String::new()).is_err());
    }

    #[test]
    fn json_text_escapes_control_characters() {
        let mut s = String::new();
        write_json_string("a\"b\\c\nd\u{1}é", &mut s);
        assert_eq!(s, r#""a\"b\\c\nd\u0001é""#);
        let v: String = serde_json::from_str(&s).unwrap();
        assert_eq!(v, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn small_decimals_keep_their_leading_zeros() {
        let mut out = String::new();
        decimal(5, 3, &mut out);
        assert_eq!(out, "0.005");
        out.clear();
        decimal(-5, 1, &mut out);
        assert_eq!(out, "-0.5");
    }
}
