//! The serde seeds of the direct path: a record's object into its row's builders.

use std::fmt;

use arrow_schema::{ArrowError, TimeUnit};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::rows::B;
use super::{Col, Kind, MISS};
use crate::route::json::{through, Found, Key, MAX_FIELDS};

fn miss<E: de::Error>() -> E {
    E::custom(MISS)
}

/// An object into a struct's builders (or, at the top, into the row's columns), finding the
/// routed fields under `mask` on the way.
pub(super) struct StructSeed<'p, 'b, 'f, 'a> {
    pub(super) cols: &'p [Col],
    pub(super) b: &'b mut [B],
    pub(super) follow: &'b mut [Vec<u16>],
    pub(super) id: usize,
    pub(super) strict: bool,
    pub(super) paths: &'p [Vec<String>],
    pub(super) mask: u8,
    pub(super) depth: usize,
    pub(super) found: &'f mut Found<'a>,
}

impl<'de, 'p, 'b, 'f> DeserializeSeed<'de> for StructSeed<'p, 'b, 'f, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 'p, 'b, 'f> Visitor<'de> for StructSeed<'p, 'b, 'f, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        let mut seen: u128 = 0;
        let mut prev = self.cols.len();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            let key: &str = &key;
            let (ends_here, deeper) = through(self.paths, self.mask, self.depth, key);
            let guess = self.follow[self.id][prev] as usize;
            let i = if self.cols.get(guess).is_some_and(|c| c.name == key) {
                Some(guess)
            } else {
                self.cols.iter().position(|c| c.name == key)
            };
            let Some(i) = i else {
                if self.strict || deeper != 0 {
                    return Err(miss());
                }
                match ends_here {
                    Some(f) => self.found[f] = Some(map.next_value::<&'de RawValue>()?),
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                continue;
            };
            self.follow[self.id][prev] = i as u16;
            prev = i;
            if seen & (1 << i) != 0 {
                return Err(miss()); // a duplicate key: arrow-json keeps the last
            }
            seen |= 1 << i;
            let col = &self.cols[i];
            let b = &mut self.b[i];
            if let Some(f) = ends_here {
                let raw: &'de RawValue = map.next_value()?;
                self.found[f] = Some(raw);
                if deeper != 0 {
                    return Err(miss());
                }
                let mut de = serde_json::Deserializer::from_str(raw.get());
                ValueSeed {
                    col,
                    b,
                    follow: &mut *self.follow,
                    strict: self.strict,
                }
                .deserialize(&mut de)
                .map_err(|_| miss::<M::Error>())?;
            } else if deeper != 0 {
                let Kind::Struct { cols, id, .. } = &col.kind else {
                    return Err(miss());
                };
                let B::Struct { children, valid } = b else {
                    unreachable!("builders follow their column's kind")
                };
                let present = map.next_value_seed(Nullable(StructSeed {
                    cols,
                    b: children,
                    follow: &mut *self.follow,
                    id: *id,
                    strict: self.strict,
                    paths: self.paths,
                    mask: deeper,
                    depth: self.depth + 1,
                    found: &mut *self.found,
                }))?;
                if !present {
                    if !col.nullable {
                        return Err(miss());
                    }
                    children.iter_mut().for_each(B::null);
                }
                valid.append(present);
            } else {
                map.next_value_seed(ValueSeed {
                    col,
                    b,
                    follow: &mut *self.follow,
                    strict: self.strict,
                })?;
            }
        }
        // Fields the object did not name are null.
        for (i, (col, b)) in self.cols.iter().zip(self.b.iter_mut()).enumerate() {
            if seen & (1 << i) == 0 {
                if !col.nullable {
                    return Err(miss());
                }
                b.null();
            }
        }
        Ok(())
    }
}

/// A struct that may be JSON null: `Ok(false)` for null (the children untouched).
struct Nullable<S>(S);

impl<'de, 'p, 'b, 'f> DeserializeSeed<'de> for Nullable<StructSeed<'p, 'b, 'f, 'de>> {
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 'p, 'b, 'f> Visitor<'de> for Nullable<StructSeed<'p, 'b, 'f, 'de>> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object or null")
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<bool, M::Error> {
        self.0.visit_map(map).map(|()| true)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Err(miss())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Err(miss())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Err(miss())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Err(miss())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<bool, E> {
        Err(miss())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<bool, A::Error> {
        Err(miss())
    }
}

/// One value into a column's builders.
struct ValueSeed<'p, 'b> {
    col: &'p Col,
    b: &'b mut B,
    follow: &'b mut [Vec<u16>],
    strict: bool,
}

impl<'de, 'p, 'b> DeserializeSeed<'de> for ValueSeed<'p, 'b> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match (&self.col.kind, self.b) {
            (
                Kind::Utf8,
                B::Utf8 {
                    offsets,
                    data,
                    valid,
                },
            ) => {
                let raw: &'de RawValue = serde::Deserialize::deserialize(d)?;
                let text = raw.get();
                if text == "null" {
                    if !self.col.nullable {
                        return Err(miss());
                    }
                    valid.append(false);
                } else {
                    json_text(text, data);
                    valid.append(true);
                }
                offsets.push(data.len() as i32);
                Ok(())
            }
            (Kind::Float64, B::Float64 { values, valid }) => {
                let raw: &'de RawValue = serde::Deserialize::deserialize(d)?;
                let text = raw.get();
                if text == "null" {
                    if !self.col.nullable {
                        return Err(miss());
                    }
                    values.push(0.0);
                    valid.append(false);
                    return Ok(());
                }
                // arrow-json parses a number's text (correctly rounded, as std's parser).
                let first = text.as_bytes()[0];
                if !(first == b'-' || first.is_ascii_digit()) {
                    return Err(miss());
                }
                let v = text.parse::<f64>().map_err(|_| miss::<D::Error>())?;
                if !v.is_finite() {
                    return Err(miss()); // out of range: arrow-json's own parser decides
                }
                values.push(v);
                valid.append(true);
                Ok(())
            }
            (kind, b) => d.deserialize_any(Value {
                col: self.col,
                kind,
                b,
                follow: self.follow,
                strict: self.strict,
            }),
        }
    }
}

struct Value<'p, 'b> {
    col: &'p Col,
    kind: &'p Kind,
    b: &'b mut B,
    follow: &'b mut [Vec<u16>],
    strict: bool,
}

impl Value<'_, '_> {
    fn int<E: de::Error>(self, v: i128) -> Result<(), E> {
        match self.b {
            B::Int32 { values, valid } => {
                values.push(i32::try_from(v).map_err(|_| miss::<E>())?);
                valid.append(true);
            }
            B::Int64 { values, valid } => {
                values.push(i64::try_from(v).map_err(|_| miss::<E>())?);
                valid.append(true);
            }
            _ => return Err(miss()),
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for Value<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        if !self.col.nullable {
            return Err(miss());
        }
        self.b.null();
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        match self.b {
            B::Bool { values, valid } => {
                values.append(v);
                valid.append(true);
                Ok(())
            }
            _ => Err(miss()),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.int(v as i128)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.int(v as i128)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(miss())
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        let (Kind::Timestamp { unit, tz, .. }, B::Int64 { values, valid }) = (self.kind, self.b)
        else {
            return Err(miss());
        };
        let t = match tz {
            Some(tz) => in_unit(&arrow_cast::parse::string_to_datetime(tz, s), *unit),
            None => in_unit(
                &arrow_cast::parse::string_to_datetime(&chrono::Utc, s),
                *unit,
            ),
        };
        values.push(t.ok_or_else(miss::<E>)?);
        valid.append(true);
        Ok(())
    }

    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<(), M::Error> {
        let (Kind::Struct { cols, id, .. }, B::Struct { children, valid }) = (self.kind, self.b)
        else {
            return Err(miss());
        };
        let mut none: Found<'de> = [None; MAX_FIELDS];
        StructSeed {
            cols,
            b: children,
            follow: self.follow,
            id: *id,
            strict: self.strict,
            paths: &[],
            mask: 0,
            depth: 0,
            found: &mut none,
        }
        .visit_map(map)?;
        valid.append(true);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (
            Kind::List { item, .. },
            B::List {
                offsets,
                item: ib,
                valid,
            },
        ) = (self.kind, self.b)
        else {
            return Err(miss());
        };
        while seq
            .next_element_seed(ValueSeed {
                col: item,
                b: ib,
                follow: &mut *self.follow,
                strict: self.strict,
            })?
            .is_some()
        {}
        offsets.push(ib.len() as i32);
        valid.append(true);
        Ok(())
    }
}

fn in_unit<T: chrono::TimeZone>(
    t: &Result<chrono::DateTime<T>, ArrowError>,
    unit: TimeUnit,
) -> Option<i64> {
    let t = t.as_ref().ok()?;
    match unit {
        TimeUnit::Second => Some(t.timestamp()),
        TimeUnit::Millisecond => Some(t.timestamp_millis()),
        TimeUnit::Microsecond => Some(t.timestamp_micros()),
        TimeUnit::Nanosecond => t.timestamp_nanos_opt(),
    }
}

/// Appends what Lakesink's `Utf8` decoder makes of a JSON value's text: a string's value, any
/// other value's compact JSON text, strings inside it unescaped and escaped again as
/// [`lakesink_schema_registry::wire::write_json_string`] does, numbers as written.
fn json_text(text: &str, out: &mut Vec<u8>) {
    let b = text.as_bytes();
    if b[0] == b'"' {
        let inner = &text[1..text.len() - 1];
        if memchr::memchr(b'\\', inner.as_bytes()).is_none() {
            out.extend_from_slice(inner.as_bytes());
        } else {
            let s: String = serde_json::from_str(text).expect("a validated JSON string");
            out.extend_from_slice(s.as_bytes());
        }
        return;
    }
    // Compact text without escapes (what producers write) is its own compact form.
    if memchr::memchr3(b' ', b'\\', b'\n', b).is_none()
        && memchr::memchr2(b'\t', b'\r', b).is_none()
    {
        out.extend_from_slice(b);
        return;
    }
    let mut i = 0;
    let mut scratch = String::new();
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'"' => {
                // The string's end: the next quote not escaped.
                let mut j = i + 1;
                let mut escaped = false;
                loop {
                    match memchr::memchr2(b'"', b'\\', &b[j..]) {
                        Some(k) if b[j + k] == b'\\' => {
                            escaped = true;
                            j += k + 2;
                        }
                        Some(k) => {
                            j += k;
                            break;
                        }
                        None => unreachable!("a validated JSON string ends"),
                    }
                }
                let token = &text[i..=j];
                if escaped {
                    let s: String = serde_json::from_str(token).expect("a validated JSON string");
                    scratch.clear();
                    lakesink_schema_registry::wire::write_json_string(&s, &mut scratch);
                    out.extend_from_slice(scratch.as_bytes());
                } else {
                    out.extend_from_slice(token.as_bytes());
                }
                i = j + 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
}
