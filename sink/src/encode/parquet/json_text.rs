//! The `Utf8` columns of arrow-json's path: any JSON value goes in, strings as they are,
//! anything else as its compact JSON text (objects such as CloudTrail's `requestParameters`).

use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::ArrayRef;
use arrow_json::reader::{ArrayDecoder, DecoderContext, DecoderFactory, Tape, TapeElement};
use arrow_schema::{ArrowError, DataType, FieldRef};
use lakesink_schema_registry::wire::write_json_string;

/// Decodes `Utf8` columns from any JSON value: strings as they are, anything else as its JSON
/// text.
#[derive(Debug)]
pub(super) struct JsonTextFactory;

impl DecoderFactory for JsonTextFactory {
    fn make_default_decoder(
        &self,
        _ctx: &DecoderContext,
        field: &FieldRef,
        is_nullable: bool,
    ) -> Result<Option<Box<dyn ArrayDecoder>>, ArrowError> {
        Ok(match field.data_type() {
            DataType::Utf8 => Some(Box::new(JsonTextDecoder {
                nullable: is_nullable,
                field: field.name().clone(),
                text: String::new(),
            })),
            _ => None,
        })
    }
}

struct JsonTextDecoder {
    nullable: bool,
    field: String,
    text: String,
}

impl ArrayDecoder for JsonTextDecoder {
    fn decode(&mut self, tape: &Tape<'_>, pos: &[u32]) -> Result<ArrayRef, ArrowError> {
        let mut b = StringBuilder::with_capacity(pos.len(), pos.len() * 16);
        for &p in pos {
            match tape.get(p) {
                TapeElement::String(i) => b.append_value(tape.get_string(i)),
                TapeElement::Null => {
                    if !self.nullable {
                        return Err(ArrowError::JsonError(format!(
                            "field '{}' is required but is missing or null",
                            self.field
                        )));
                    }
                    b.append_null()
                }
                _ => {
                    self.text.clear();
                    write_json(tape, p, &mut self.text)?;
                    b.append_value(&self.text);
                }
            }
        }
        Ok(Arc::new(b.finish()))
    }
}

/// Writes the JSON value at `idx` of the tape as compact JSON text.
fn write_json(tape: &Tape<'_>, idx: u32, out: &mut String) -> Result<(), ArrowError> {
    match tape.get(idx) {
        TapeElement::StartObject(end) => {
            out.push('{');
            let mut cur = idx + 1;
            let mut first = true;
            while cur < end {
                if !first {
                    out.push(',');
                }
                first = false;
                match tape.get(cur) {
                    TapeElement::String(k) => write_json_string(tape.get_string(k), out),
                    _ => return Err(tape.error(cur, "object key")),
                }
                out.push(':');
                cur += 1;
                write_json(tape, cur, out)?;
                cur = tape.next(cur, "value")?;
            }
            out.push('}');
        }
        TapeElement::StartList(end) => {
            out.push('[');
            let mut cur = idx + 1;
            let mut first = true;
            while cur < end {
                if !first {
                    out.push(',');
                }
                first = false;
                write_json(tape, cur, out)?;
                cur = tape.next(cur, "value")?;
            }
            out.push(']');
        }
        TapeElement::String(i) => write_json_string(tape.get_string(i), out),
        TapeElement::Number(i) => out.push_str(tape.get_string(i)),
        TapeElement::True => out.push_str("true"),
        TapeElement::False => out.push_str("false"),
        TapeElement::Null => out.push_str("null"),
        TapeElement::I32(v) => out.push_str(&v.to_string()),
        TapeElement::I64(hi) => match tape.get(idx + 1) {
            TapeElement::I32(lo) => {
                out.push_str(&(((hi as i64) << 32) | (lo as u32 as i64)).to_string())
            }
            _ => return Err(tape.error(idx, "number")),
        },
        _ => return Err(tape.error(idx, "JSON value")),
    }
    Ok(())
}
