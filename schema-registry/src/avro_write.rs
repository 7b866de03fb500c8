//! JSON values written as Avro binary: the inverse of [`AvroDecoder::to_json`], for tests and the
//! benchmark (Lakesink itself only reads Avro).
//!
//! Bytes and fixed are hex strings, decimals JSON numbers or strings in the schema's scale,
//! timestamps and dates numbers in their unit, enums their symbol; a string takes any other
//! value as its JSON text (as CloudTrail's Avro schema holds free-form objects). A union takes
//! its `null` branch for null, else the first branch of the value's JSON type, else a string.

use serde_json::Value;

use crate::wire::{AvroDecoder, Node, WireError};

impl AvroDecoder {
    /// Appends the Avro binary of `v` to `out`.
    pub fn encode(&self, v: &Value, out: &mut Vec<u8>) -> Result<(), WireError> {
        encode(&self.root, v, "", out)
    }
}

fn err(path: &str, m: impl std::fmt::Display) -> WireError {
    WireError::Schema(format!("{}: {m}", if path.is_empty() { "." } else { path }))
}

/// Appends `v` as an Avro long (zig-zag varint).
pub(crate) fn long(v: i64, out: &mut Vec<u8>) {
    let mut u = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let b = (u & 0x7f) as u8;
        u >>= 7;
        if u == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn fits(node: &Node, v: &Value) -> bool {
    match (node, v) {
        (Node::Null, Value::Null) => true,
        (Node::Boolean, Value::Bool(_)) => true,
        (Node::Int | Node::Long, Value::Number(n)) => n.is_i64(),
        (Node::Float | Node::Double | Node::Decimal { .. }, Value::Number(_)) => true,
        (Node::String | Node::Bytes | Node::Fixed(_) | Node::Enum(_), Value::String(_)) => true,
        (Node::Decimal { .. }, Value::String(_)) => true,
        (Node::Array(_), Value::Array(_)) => true,
        (Node::Map(_) | Node::Record(_), Value::Object(_)) => true,
        _ => false,
    }
}

/// A union's branch for `v`: the first of its JSON type, else the first string.
fn branch(branches: &[Node], v: &Value) -> Option<usize> {
    branches
        .iter()
        .position(|b| fits(b, v))
        .or_else(|| match v {
            Value::Null => None,
            _ => branches.iter().position(|b| matches!(b, Node::String)),
        })
}

fn unhex(s: &str, path: &str) -> Result<Vec<u8>, WireError> {
    if s.len() % 2 != 0 {
        return Err(err(path, "odd-length hex"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| err(path, e)))
        .collect()
}

/// The unscaled value of a decimal's text in `scale`.
fn unscaled(text: &str, scale: u32, path: &str) -> Result<i128, WireError> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > scale as usize {
        return Err(err(path, format!("{text} has more than {scale} decimals")));
    }
    let digits = format!("{int}{frac}{}", "0".repeat(scale as usize - frac.len()));
    digits.parse::<i128>().map_err(|e| err(path, e))
}

fn encode(node: &Node, v: &Value, path: &str, out: &mut Vec<u8>) -> Result<(), WireError> {
    match (node, v) {
        (Node::Null, Value::Null) => {}
        (Node::Boolean, Value::Bool(b)) => out.push(*b as u8),
        (Node::Int | Node::Long, Value::Number(n)) if n.is_i64() => long(n.as_i64().unwrap(), out),
        (Node::Float, Value::Number(n)) => {
            out.extend_from_slice(&(n.as_f64().unwrap_or_default() as f32).to_le_bytes())
        }
        (Node::Double, Value::Number(n)) => {
            out.extend_from_slice(&n.as_f64().unwrap_or_default().to_le_bytes())
        }
        (Node::String, Value::String(s)) => {
            long(s.len() as i64, out);
            out.extend_from_slice(s.as_bytes());
        }
        (Node::String, other) if !other.is_null() => {
            let s = other.to_string();
            long(s.len() as i64, out);
            out.extend_from_slice(s.as_bytes());
        }
        (Node::Bytes, Value::String(s)) => {
            let b = unhex(s, path)?;
            long(b.len() as i64, out);
            out.extend_from_slice(&b);
        }
        (Node::Fixed(n), Value::String(s)) => {
            let b = unhex(s, path)?;
            if b.len() != *n {
                return Err(err(path, format!("fixed of {n} bytes, got {}", b.len())));
            }
            out.extend_from_slice(&b);
        }
        (Node::Decimal { fixed, scale }, Value::Number(_) | Value::String(_)) => {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let u = unscaled(&text, *scale, path)?;
            let bytes = u.to_be_bytes();
            let b = match fixed {
                Some(n) => {
                    if *n > 16 {
                        return Err(err(path, "decimal wider than 128 bits"));
                    }
                    bytes[16 - n..].to_vec()
                }
                None => {
                    // The shortest two's complement that keeps the sign.
                    let mut start = 0;
                    while start < 15
                        && ((bytes[start] == 0 && bytes[start + 1] & 0x80 == 0)
                            || (bytes[start] == 0xff && bytes[start + 1] & 0x80 != 0))
                    {
                        start += 1;
                    }
                    long((16 - start) as i64, out);
                    bytes[start..].to_vec()
                }
            };
            out.extend_from_slice(&b);
        }
        (Node::Enum(symbols), Value::String(s)) => {
            let i = symbols
                .iter()
                .position(|x| x == s)
                .ok_or_else(|| err(path, format!("`{s}` is not a symbol")))?;
            long(i as i64, out);
        }
        (Node::Array(items), Value::Array(vs)) => {
            if !vs.is_empty() {
                long(vs.len() as i64, out);
                for (i, x) in vs.iter().enumerate() {
                    encode(items, x, &format!("{path}[{i}]"), out)?;
                }
            }
            long(0, out);
        }
        (Node::Map(values), Value::Object(o)) => {
            if !o.is_empty() {
                long(o.len() as i64, out);
                for (k, x) in o {
                    long(k.len() as i64, out);
                    out.extend_from_slice(k.as_bytes());
                    encode(values, x, &format!("{path}.{k}"), out)?;
                }
            }
            long(0, out);
        }
        (Node::Record(fields), Value::Object(o)) => {
            for (name, f) in fields {
                let x = o.get(name).unwrap_or(&Value::Null);
                encode(f, x, &format!("{path}.{name}"), out)?;
            }
        }
        (Node::Union(branches), _) => {
            let i = branch(branches, v)
                .ok_or_else(|| err(path, format!("no branch of the union takes {v}")))?;
            long(i as i64, out);
            encode(&branches[i], v, path, out)?;
        }
        (_, other) => return Err(err(path, format!("{other} does not fit {node:?}"))),
    }
    Ok(())
}
