//! JSON records parsed once, straight into Arrow builders, for Parquet tables.
//!
//! The route pass (serde_json, strict) used to validate each record and find its routed fields,
//! and arrow-json parsed it again at the settle. [`JsonDirect::parse`] does both in one strict
//! serde pass: it fills a staging row of builders shaped by the table's schema while it finds
//! the routed fields, and the writer then moves the row into its file's builders
//! ([`JsonRows::push_row`]).
//!
//! It takes only what it is sure arrow-json (with Lakesink's `Utf8` decoder) would make of the
//! record the same way: strings into `Utf8` (any other value as its compact JSON text, as
//! arrow-json's path writes it), booleans, integers into `Int32`/`Int64`, numbers into `Float64`,
//! RFC 3339 strings and integers into timestamps (arrow-cast's parser, as arrow-json), objects
//! into structs and arrays into lists; missing or null fields as nulls where a null may go. For
//! anything else — a coercion (a string into an integer column), a null where none may go, an
//! unknown field under `unknown_fields = "fail"`, a duplicate key, invalid JSON — it says
//! [`Miss`], the staging row is dropped, and the record takes the old way (the route pass, then
//! arrow-json at the settle), which accepts it or refuses it with arrow-json's own message.
//! So what a record becomes, and what a bad one's dead letter says, does not depend on which
//! path it took.

use arrow_array::timezone::Tz;
use arrow_schema::{DataType, FieldRef, Fields, SchemaRef, TimeUnit};
use serde::de::DeserializeSeed;

use crate::route::json::{Found, MAX_FIELDS};

mod rows;
mod seeds;

use rows::builder;
pub use rows::JsonRows;
use seeds::StructSeed;

/// The direct path of one table schema.
#[derive(Debug)]
pub struct JsonDirect {
    schema: SchemaRef,
    root: Vec<Col>,
    strict: bool,
    /// Structs in the schema, the top-level row (id 0) included.
    structs: Vec<usize>,
}

#[derive(Debug)]
struct Col {
    name: String,
    nullable: bool,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Utf8,
    Bool,
    Int32,
    Int64,
    Float64,
    Timestamp {
        unit: TimeUnit,
        tz: Option<Tz>,
        data_type: DataType,
    },
    Struct {
        fields: Fields,
        cols: Vec<Col>,
        /// Its index in [`JsonRows::follow`].
        id: usize,
    },
    List {
        field: FieldRef,
        item: Box<Col>,
    },
}

/// A record the direct path does not take (it then goes the old way).
#[derive(Debug, PartialEq, Eq)]
pub struct Miss;

const MISS: &str = "lakesink: not for the direct path";

impl JsonDirect {
    /// The direct path for `schema`, if every column is of a type it takes.
    pub fn new(schema: SchemaRef, strict: bool) -> Option<JsonDirect> {
        let mut structs = vec![schema.fields().len()];
        let root = schema
            .fields()
            .iter()
            .map(|f| col(f, &mut structs))
            .collect::<Option<Vec<_>>>()?;
        (root.len() <= 128).then_some(JsonDirect {
            schema,
            root,
            strict,
            structs,
        })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Empty rows of this schema.
    pub fn rows(&self) -> JsonRows {
        JsonRows {
            cols: self.root.iter().map(|c| builder(&c.kind)).collect(),
            rows: 0,
            follow: self.structs.iter().map(|&n| vec![0; n + 1]).collect(),
        }
    }

    /// Parses `text` (one JSON object) into a new row of `rows`, and returns the raw text of the
    /// fields on `paths` as [`crate::route::json::FieldSet::extract`] would. On [`Miss`] `rows`
    /// is as it was.
    pub fn parse<'a>(
        &self,
        text: &'a str,
        paths: &[Vec<String>],
        rows: &mut JsonRows,
    ) -> Result<Found<'a>, Miss> {
        let mut found: Found<'a> = [None; MAX_FIELDS];
        let before = rows.rows;
        let mut de = serde_json::Deserializer::from_str(text);
        let r = StructSeed {
            cols: &self.root,
            b: &mut rows.cols,
            follow: &mut rows.follow,
            id: 0,
            strict: self.strict,
            paths,
            mask: ((1u16 << paths.len()) - 1) as u8,
            depth: 0,
            found: &mut found,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end());
        match r {
            Ok(()) => {
                rows.rows += 1;
                Ok(found)
            }
            Err(_) => {
                rows.truncate(before);
                Err(Miss)
            }
        }
    }
}

fn col(f: &FieldRef, structs: &mut Vec<usize>) -> Option<Col> {
    let kind = match f.data_type() {
        DataType::Utf8 => Kind::Utf8,
        DataType::Boolean => Kind::Bool,
        DataType::Int32 => Kind::Int32,
        DataType::Int64 => Kind::Int64,
        DataType::Float64 => Kind::Float64,
        DataType::Timestamp(unit, tz) => Kind::Timestamp {
            unit: *unit,
            tz: match tz {
                Some(tz) => Some(tz.parse().ok()?),
                None => None,
            },
            data_type: f.data_type().clone(),
        },
        DataType::Struct(fields) if fields.len() <= 128 => {
            let id = structs.len();
            structs.push(fields.len());
            Kind::Struct {
                fields: fields.clone(),
                cols: fields
                    .iter()
                    .map(|f| col(f, structs))
                    .collect::<Option<Vec<_>>>()?,
                id,
            }
        }
        DataType::List(item) => Kind::List {
            field: item.clone(),
            item: Box::new(col(item, structs)?),
        },
        _ => return None,
    };
    Some(Col {
        name: f.name().clone(),
        nullable: f.is_nullable(),
        kind,
    })
}

#[cfg(test)]
mod tests;
