//! One pass over a record's JSON that validates it, checks that it is an object, and borrows the
//! raw text of the few fields a table needs (event time, partition fields) — no
//! `serde_json::Value`, no allocation for fields without escapes.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserializer as _;
use serde_json::value::RawValue;

/// At most this many distinct field paths per table (event time plus partition fields).
pub const MAX_FIELDS: usize = 8;

/// The field paths a table reads, compiled for matching.
#[derive(Clone, Debug, Default)]
pub struct FieldSet {
    paths: Vec<Vec<String>>,
}

/// What one record held at each path of a [`FieldSet`]: the raw JSON text, if present.
pub type Found<'a> = [Option<&'a RawValue>; MAX_FIELDS];

/// Why a record's bytes are not a usable JSON object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("invalid JSON: {0}")]
    Invalid(String),
    #[error("not a JSON object (the lake stores one object per line)")]
    NotAnObject,
}

/// A table that reads more fields of each record than a router can find in one pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a table may read at most {max} fields of a record (its event time and the values in its path together)")]
pub struct TooManyFields {
    pub max: usize,
}

impl FieldSet {
    /// Adds a path and returns its index; the same path twice gets the same index.
    pub fn add(&mut self, path: &[String]) -> Result<usize, TooManyFields> {
        if let Some(i) = self.paths.iter().position(|p| p == path) {
            return Ok(i);
        }
        if self.paths.len() == MAX_FIELDS {
            return Err(TooManyFields { max: MAX_FIELDS });
        }
        self.paths.push(path.to_vec());
        Ok(self.paths.len() - 1)
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// The paths, in the order of their indices.
    pub fn paths(&self) -> &[Vec<String>] {
        &self.paths
    }

    /// Validates `text` as one JSON object and returns the raw text at each path. (Text, not
    /// bytes: the caller validated UTF-8 once for the whole record, so the parser need not
    /// validate each string again.)
    pub fn extract<'a>(&self, text: &'a str) -> Result<Found<'a>, JsonError> {
        let mut found: Found<'a> = [None; MAX_FIELDS];
        let mut de = serde_json::Deserializer::from_str(text);
        let mask = ((1u16 << self.paths.len()) - 1) as u8;
        ObjectSeed {
            paths: &self.paths,
            mask,
            depth: 0,
            found: &mut found,
        }
        .deserialize(&mut de)
        .map_err(map_err)?;
        de.end().map_err(|e| JsonError::Invalid(e.to_string()))?;
        Ok(found)
    }
}

fn map_err(e: serde_json::Error) -> JsonError {
    if e.to_string().starts_with(NOT_OBJECT) {
        JsonError::NotAnObject
    } else {
        JsonError::Invalid(e.to_string())
    }
}

const NOT_OBJECT: &str = "lakesink: not an object";

/// Visits an object at `depth` of the wanted paths, recording leaves and descending into
/// objects on the way to deeper ones. `mask` has a bit for each path that runs through this
/// object.
struct ObjectSeed<'w, 'f, 'a> {
    paths: &'w [Vec<String>],
    mask: u8,
    depth: usize,
    found: &'f mut Found<'a>,
}

impl<'de, 'w, 'f> DeserializeSeed<'de> for ObjectSeed<'w, 'f, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 'w, 'f> Visitor<'de> for ObjectSeed<'w, 'f, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let key = key.0;
            let (ends_here, deeper) = through(self.paths, self.mask, self.depth, &key);
            if ends_here.is_none() && deeper == 0 {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let raw: &'de RawValue = map.next_value()?;
            if let Some(i) = ends_here {
                self.found[i] = Some(raw);
            }
            if deeper != 0 {
                // Walk the borrowed subtree for the deeper paths. A non-object on the way to a
                // deeper path simply has no such field.
                let mut de = serde_json::Deserializer::from_str(raw.get());
                let _ = (&mut de).deserialize_any(SubtreeSeed {
                    inner: ObjectSeed {
                        paths: self.paths,
                        mask: deeper,
                        depth: self.depth + 1,
                        found: &mut *self.found,
                    },
                });
            }
        }
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(NOT_OBJECT))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(NOT_OBJECT))
    }
}

/// Walks a subtree whose raw text was borrowed from the record; the raw text lives as long as
/// the record, so the found values may borrow from it.
struct SubtreeSeed<'w, 'f, 'a> {
    inner: ObjectSeed<'w, 'f, 'a>,
}

impl<'de, 'w, 'f> Visitor<'de> for SubtreeSeed<'w, 'f, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<(), M::Error> {
        self.inner.visit_map(map)
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

/// The paths under `mask` (of an object at `depth`) that continue through `key`: the one that
/// ends here (the last, if several), and a mask of those that go deeper.
pub(crate) fn through(
    paths: &[Vec<String>],
    mask: u8,
    depth: usize,
    key: &str,
) -> (Option<usize>, u8) {
    if mask == 0 {
        return (None, 0);
    }
    let mut ends_here = None;
    let mut deeper: u8 = 0;
    for (i, p) in paths.iter().enumerate() {
        if mask & (1 << i) != 0 && p[depth] == key {
            if p.len() == depth + 1 {
                ends_here = Some(i);
            } else {
                deeper |= 1 << i;
            }
        }
    }
    (ends_here, deeper)
}

/// An object key, borrowed when it has no escapes (also read by the direct Parquet path).
pub(crate) struct Key<'a>(pub(crate) Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A found value as text for a path or a time parser: strings unescaped, `null` as `None`,
/// numbers, booleans, objects and arrays as their JSON text. A string without escapes is
/// borrowed: the raw value is valid JSON, so its text between the quotes is the value.
/// (serde's `Cow<str>` always allocates, one `String` per record.)
pub fn value_text(raw: &RawValue) -> Option<Cow<'_, str>> {
    let s = raw.get();
    match s.as_bytes().first() {
        Some(b'"') => {
            let inner = &s[1..s.len() - 1];
            if inner.contains('\\') {
                serde_json::from_str::<String>(s).ok().map(Cow::Owned)
            } else {
                Some(Cow::Borrowed(inner))
            }
        }
        Some(b'n') => None,
        _ => Some(Cow::Borrowed(s)),
    }
}

/// Whether the raw value is a JSON string (as opposed to a number).
pub fn is_string(raw: &RawValue) -> bool {
    raw.get().starts_with('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(paths: &[&str]) -> FieldSet {
        let mut s = FieldSet::default();
        for p in paths {
            s.add(&p.split('.').map(str::to_string).collect::<Vec<_>>())
                .unwrap();
        }
        s
    }

    fn texts(s: &FieldSet, json: &str) -> Vec<Option<String>> {
        let f = s.extract(json).unwrap();
        (0..s.paths.len())
            .map(|i| f[i].and_then(value_text).map(|c| c.into_owned()))
            .collect()
    }

    #[test]
    fn top_level_and_nested_fields() {
        let s = set(&["eventTime", "userIdentity.type", "awsRegion", "a.b.c"]);
        let got = texts(
            &s,
            r#"{"eventTime":"2024-01-02T01:02:03Z","x":[1,{"y":2}],"userIdentity":{"type":"IAMUser","arn":"a"},"awsRegion":"eu-west-1","a":{"b":{"c":5}}}"#,
        );
        assert_eq!(
            got,
            vec![
                Some("2024-01-02T01:02:03Z".into()),
                Some("IAMUser".into()),
                Some("eu-west-1".into()),
                Some("5".into())
            ]
        );
    }

    #[test]
    fn missing_null_escaped_and_non_object_parents() {
        let s = set(&["k", "p.q", "n"]);
        let got = texts(&s, r#"{"k":"a\/b\u00e9","p":7,"n":null}"#);
        assert_eq!(got, vec![Some("a/bé".into()), None, None]);
        let got = texts(&s, r#"{"\u006b":"escaped key"}"#);
        assert_eq!(got, vec![Some("escaped key".into()), None, None]);
    }

    #[test]
    fn strings_without_escapes_are_borrowed_not_copied() {
        let s = set(&["t", "e"]);
        let f = s
            .extract(r#"{"t":"2024-01-02T01:02:03Z","e":"a\"b"}"#)
            .unwrap();
        assert!(matches!(
            value_text(f[0].unwrap()),
            Some(Cow::Borrowed("2024-01-02T01:02:03Z"))
        ));
        assert!(matches!(value_text(f[1].unwrap()), Some(Cow::Owned(v)) if v == "a\"b"));
        let f = s.extract(r#"{"t":"","e":"\\"}"#).unwrap();
        assert!(matches!(value_text(f[0].unwrap()), Some(Cow::Borrowed(""))));
        assert!(matches!(value_text(f[1].unwrap()), Some(Cow::Owned(v)) if v == "\\"));
    }

    #[test]
    fn rejects_what_is_not_one_object() {
        let s = set(&["k"]);
        assert_eq!(s.extract("[1,2]").err(), Some(JsonError::NotAnObject));
        assert_eq!(s.extract("\"str\"").err(), Some(JsonError::NotAnObject));
        assert!(matches!(s.extract("{\"k\":1"), Err(JsonError::Invalid(_))));
        assert!(matches!(
            s.extract("{\"k\":1} {}"),
            Err(JsonError::Invalid(_))
        ));
        assert!(matches!(
            s.extract("{\"k\":tru}"),
            Err(JsonError::Invalid(_))
        ));
        assert!(s.extract(" {\"k\":1}\n").is_ok());
    }
}
