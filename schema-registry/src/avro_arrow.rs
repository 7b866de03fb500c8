//! Avro datums decoded straight into Arrow arrays, for Parquet tables: no JSON text between the
//! Avro bytes and the columns.
//!
//! The JSON path ([`AvroDecoder::to_json`], then arrow-json) writes each datum out as text and
//! parses it again; this one reads the datum once into builders shaped by the table's Arrow
//! schema ([`crate::avro::to_arrow`] of the same Avro schema). The arrays are the ones the JSON
//! path gives (`tests` checks this, value for value): timestamps, dates and times in their unit,
//! decimals unscaled in their column's scale, enums and uuids as strings, `["null", T]` unions
//! as nullable columns, NaN and infinities as null.
//!
//! A schema this path does not cover (a union of two non-null types, a recursive record: the
//! shapes [`crate::avro::to_arrow`] keeps as JSON text) gets no [`AvroArrow`], and its records
//! keep the JSON path.
//!
//! The router still needs a record's event time and partition fields before the record reaches
//! a file: [`AvroDecoder::project`] reads the whole datum, validating it as
//! [`AvroDecoder::to_json`] does, and writes only the fields a table routes by as a small JSON
//! object.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, FixedSizeBinaryBuilder, Float32Builder, Float64Builder,
    Int32Builder, Int64Builder, StringBuilder,
};
use arrow_array::{
    make_array, Array, ArrayRef, ListArray, MapArray, NullArray, RecordBatch, StructArray,
};
use arrow_buffer::{i256, NullBufferBuilder, OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, FieldRef, Fields, SchemaRef, TimeUnit};

use crate::wire::{blocks, decode, AvroDecoder, Node, Reader, WireError};

/// How one Avro schema's datums become the columns of its Arrow schema.
#[derive(Debug)]
pub struct AvroArrow {
    schema: SchemaRef,
    columns: Vec<Slot>,
}

/// A value of the datum and the column it fills: its shape, and for a `["null", T]` union the
/// branch index of the null.
#[derive(Debug)]
struct Slot {
    shape: Shape,
    /// `Some((null, value))`: the value is a union of a null and one other branch.
    union: Option<(i64, i64)>,
}

#[derive(Debug)]
enum Shape {
    Null,
    Bool,
    /// An Avro `int` into `Int32`, `Date32` or `Time32(ms)`.
    Int(DataType),
    /// An Avro `long` into `Int64`, `Time64(us)` or a timestamp.
    Long(DataType),
    Float,
    Double,
    Bytes,
    Fixed(usize),
    String,
    Decimal {
        fixed: Option<usize>,
        data_type: DataType,
        precision: u8,
    },
    Enum(Arc<[String]>),
    List {
        field: FieldRef,
        item: Box<Slot>,
    },
    Map {
        entries: FieldRef,
        keys: FieldRef,
        value: Box<Slot>,
    },
    Record {
        fields: Fields,
        children: Vec<Slot>,
    },
}

/// The builders of one column, shaped like its [`Slot`].
enum Col {
    Null(usize),
    Bool(BooleanBuilder),
    Int(Int32Builder),
    Long(Int64Builder),
    Float(Float32Builder),
    Double(Float64Builder),
    Bytes(BinaryBuilder),
    Fixed(FixedSizeBinaryBuilder),
    String(StringBuilder),
    Decimal(Vec<i128>, NullBufferBuilder),
    List {
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
        item: Box<Col>,
    },
    Map {
        offsets: Vec<i32>,
        nulls: NullBufferBuilder,
        keys: StringBuilder,
        value: Box<Col>,
    },
    Record {
        nulls: NullBufferBuilder,
        children: Vec<Col>,
    },
}

/// Rows of one Avro schema being decoded into Arrow.
pub struct AvroRows<'a> {
    plan: &'a AvroArrow,
    columns: Vec<Col>,
    rows: usize,
}

impl AvroArrow {
    /// The direct path from `decoder`'s schema to `schema` (its [`crate::avro::to_arrow`]);
    /// `None` when a field is of a shape only the JSON path reads.
    pub fn new(decoder: &AvroDecoder, schema: SchemaRef) -> Option<AvroArrow> {
        let Node::Record(fields) = &decoder.root else {
            return None;
        };
        if fields.len() != schema.fields().len() {
            return None;
        }
        let columns = fields
            .iter()
            .zip(schema.fields())
            .map(|((name, node), field)| {
                (name == field.name())
                    .then(|| slot(node, field.data_type(), field.is_nullable()))
                    .flatten()
            })
            .collect::<Option<Vec<_>>>()?;
        Some(AvroArrow { schema, columns })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Empty builders for about `rows` rows.
    pub fn rows(&self, rows: usize) -> AvroRows<'_> {
        AvroRows {
            plan: self,
            columns: self.columns.iter().map(|s| col(&s.shape, rows)).collect(),
            rows: 0,
        }
    }
}

impl AvroRows<'_> {
    /// Appends one datum. After an error the rows are unusable (some columns took part of the
    /// datum): start again with [`AvroArrow::rows`].
    pub fn append(&mut self, data: &[u8]) -> Result<(), WireError> {
        let mut r = Reader { data, at: 0 };
        for (slot, col) in self.plan.columns.iter().zip(&mut self.columns) {
            read(slot, col, &mut r)?;
        }
        if r.at != data.len() {
            return Err(WireError::Data {
                at: r.at,
                message: format!("{} bytes left after the datum", data.len() - r.at),
            });
        }
        self.rows += 1;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The rows appended, as one batch of the schema. Fails as the JSON path does on a null
    /// (NaN, infinity) in a column that may not hold one.
    pub fn finish(self) -> Result<RecordBatch, ArrowError> {
        let arrays = self
            .plan
            .columns
            .iter()
            .zip(self.columns)
            .zip(self.plan.schema.fields())
            .map(|((slot, col), field)| {
                finish(&slot.shape, col).map_err(|e| named(field.name(), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new(self.plan.schema.clone(), arrays)
    }
}

fn named(field: &str, e: ArrowError) -> ArrowError {
    ArrowError::InvalidArgumentError(format!("field '{field}': {e}"))
}

/// The slot of `node` in a column of `data_type`, if the direct path covers the pair.
fn slot(node: &Node, data_type: &DataType, nullable: bool) -> Option<Slot> {
    if let Node::Union(branches) = node {
        return match branches.as_slice() {
            [one] => slot(one, data_type, nullable),
            [Node::Null, other] if nullable => Some(Slot {
                union: Some((0, 1)),
                ..slot(other, data_type, true)?
            }),
            [other, Node::Null] if nullable => Some(Slot {
                union: Some((1, 0)),
                ..slot(other, data_type, true)?
            }),
            _ => None,
        };
    }
    let shape = match (node, data_type) {
        (Node::Null, DataType::Null) => Shape::Null,
        (Node::Boolean, DataType::Boolean) => Shape::Bool,
        (
            Node::Int,
            DataType::Int32 | DataType::Date32 | DataType::Time32(TimeUnit::Millisecond),
        ) => Shape::Int(data_type.clone()),
        (
            Node::Long,
            DataType::Int64 | DataType::Time64(TimeUnit::Microsecond) | DataType::Timestamp(_, _),
        ) => Shape::Long(data_type.clone()),
        (Node::Float, DataType::Float32) => Shape::Float,
        (Node::Double, DataType::Float64) => Shape::Double,
        (Node::Bytes, DataType::Binary) => Shape::Bytes,
        (Node::Fixed(n), DataType::FixedSizeBinary(m)) if *n == *m as usize => Shape::Fixed(*n),
        (Node::String, DataType::Utf8) => Shape::String,
        (Node::Enum(symbols), DataType::Utf8) => Shape::Enum(symbols.clone().into()),
        (
            Node::Decimal { fixed, scale },
            DataType::Decimal128(p, s) | DataType::Decimal256(p, s),
        ) if *s as i64 == *scale as i64 => Shape::Decimal {
            fixed: *fixed,
            data_type: data_type.clone(),
            precision: *p,
        },
        (Node::Array(item), DataType::List(field)) => Shape::List {
            field: field.clone(),
            item: Box::new(slot(item, field.data_type(), field.is_nullable())?),
        },
        (Node::Map(value), DataType::Map(entries, false)) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return None;
            };
            if kv.len() != 2 || kv[0].data_type() != &DataType::Utf8 {
                return None;
            }
            Shape::Map {
                entries: entries.clone(),
                keys: kv[0].clone(),
                value: Box::new(slot(value, kv[1].data_type(), kv[1].is_nullable())?),
            }
        }
        (Node::Record(nodes), DataType::Struct(fields)) if nodes.len() == fields.len() => {
            let children = nodes
                .iter()
                .zip(fields)
                .map(|((name, node), f)| {
                    (name == f.name())
                        .then(|| slot(node, f.data_type(), f.is_nullable()))
                        .flatten()
                })
                .collect::<Option<Vec<_>>>()?;
            Shape::Record {
                fields: fields.clone(),
                children,
            }
        }
        _ => return None,
    };
    Some(Slot { shape, union: None })
}

fn col(shape: &Shape, rows: usize) -> Col {
    match shape {
        Shape::Null => Col::Null(0),
        Shape::Bool => Col::Bool(BooleanBuilder::with_capacity(rows)),
        Shape::Int(_) => Col::Int(Int32Builder::with_capacity(rows)),
        Shape::Long(_) => Col::Long(Int64Builder::with_capacity(rows)),
        Shape::Float => Col::Float(Float32Builder::with_capacity(rows)),
        Shape::Double => Col::Double(Float64Builder::with_capacity(rows)),
        Shape::Bytes => Col::Bytes(BinaryBuilder::with_capacity(rows, rows * 16)),
        Shape::Fixed(n) => Col::Fixed(FixedSizeBinaryBuilder::with_capacity(rows, *n as i32)),
        Shape::String | Shape::Enum(_) => {
            Col::String(StringBuilder::with_capacity(rows, rows * 16))
        }
        Shape::Decimal { .. } => {
            Col::Decimal(Vec::with_capacity(rows), NullBufferBuilder::new(rows))
        }
        Shape::List { item, .. } => Col::List {
            offsets: vec![0],
            nulls: NullBufferBuilder::new(rows),
            item: Box::new(col(&item.shape, rows)),
        },
        Shape::Map { value, .. } => Col::Map {
            offsets: vec![0],
            nulls: NullBufferBuilder::new(rows),
            keys: StringBuilder::new(),
            value: Box::new(col(&value.shape, rows)),
        },
        Shape::Record { children, .. } => Col::Record {
            nulls: NullBufferBuilder::new(rows),
            children: children.iter().map(|c| col(&c.shape, rows)).collect(),
        },
    }
}

fn text<'a>(r: &mut Reader<'a>, n: usize) -> Result<&'a str, WireError> {
    let at = r.at;
    let data = r.data;
    if data.len() - at < n {
        return Err(r.err(format!("needs {n} more bytes")));
    }
    r.at += n;
    std::str::from_utf8(&data[at..at + n]).map_err(|e| WireError::Data {
        at,
        message: format!("string is not UTF-8: {e}"),
    })
}

/// The unscaled value of an Avro decimal (big-endian two's complement).
pub(crate) fn decimal_value(fixed: Option<usize>, r: &mut Reader<'_>) -> Result<i128, WireError> {
    let n = match fixed {
        Some(n) => n,
        None => r.len()?,
    };
    let b = r.take(n)?;
    if b.len() > 16 {
        return Err(r.err("decimal wider than 128 bits"));
    }
    let mut v: i128 = if b.first().is_some_and(|x| x & 0x80 != 0) {
        -1
    } else {
        0
    };
    for x in b {
        v = (v << 8) | *x as i128;
    }
    Ok(v)
}

/// Reads one value of `slot` into `col`.
fn read(slot: &Slot, col: &mut Col, r: &mut Reader<'_>) -> Result<(), WireError> {
    if let Some((null, value)) = slot.union {
        let i = r.long()?;
        if i == null {
            append_null(&slot.shape, col);
            return Ok(());
        }
        if i != value {
            return Err(r.err(format!("union branch {i} out of range")));
        }
    }
    match (&slot.shape, col) {
        (Shape::Null, Col::Null(n)) => *n += 1,
        (Shape::Bool, Col::Bool(b)) => b.append_value(r.take(1)?[0] != 0),
        (Shape::Int(_), Col::Int(b)) => {
            let v = r.long()?;
            // The JSON path writes the long and arrow-json refuses what an int32 cannot hold.
            let v = i32::try_from(v).map_err(|_| r.err(format!("int {v} out of range")))?;
            b.append_value(v)
        }
        (Shape::Long(_), Col::Long(b)) => b.append_value(r.long()?),
        (Shape::Float, Col::Float(b)) => {
            let v = f32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes"));
            b.append_option(v.is_finite().then_some(v))
        }
        (Shape::Double, Col::Double(b)) => {
            let v = f64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
            b.append_option(v.is_finite().then_some(v))
        }
        (Shape::Bytes, Col::Bytes(b)) => {
            let n = r.len()?;
            b.append_value(r.take(n)?)
        }
        (Shape::Fixed(n), Col::Fixed(b)) => b
            .append_value(r.take(*n)?)
            .map_err(|e| r.err(e.to_string()))?,
        (Shape::String, Col::String(b)) => {
            let n = r.len()?;
            b.append_value(text(r, n)?)
        }
        (Shape::Enum(symbols), Col::String(b)) => {
            let i = r.long()?;
            let s = usize::try_from(i)
                .ok()
                .and_then(|i| symbols.get(i))
                .ok_or_else(|| r.err(format!("enum index {i} out of range")))?;
            b.append_value(s)
        }
        (
            Shape::Decimal {
                fixed, precision, ..
            },
            Col::Decimal(values, nulls),
        ) => {
            let v = decimal_value(*fixed, r)?;
            if *precision <= 38 && v.unsigned_abs() >= 10u128.pow(*precision as u32) {
                return Err(r.err(format!(
                    "decimal {v} (unscaled) has more than {precision} digits"
                )));
            }
            values.push(v);
            nulls.append_non_null();
        }
        (
            Shape::List { item, .. },
            Col::List {
                offsets,
                nulls,
                item: c,
            },
        ) => {
            let mut n = offsets[offsets.len() - 1];
            blocks(r, |r| {
                n += 1;
                read(item, c, r)
            })?;
            offsets.push(n);
            nulls.append_non_null();
        }
        (
            Shape::Map { value, .. },
            Col::Map {
                offsets,
                nulls,
                keys,
                value: c,
            },
        ) => {
            let mut n = offsets[offsets.len() - 1];
            blocks(r, |r| {
                n += 1;
                let len = r.len()?;
                keys.append_value(text(r, len)?);
                read(value, c, r)
            })?;
            offsets.push(n);
            nulls.append_non_null();
        }
        (
            Shape::Record { children, .. },
            Col::Record {
                nulls,
                children: cs,
            },
        ) => {
            for (s, c) in children.iter().zip(cs) {
                read(s, c, r)?;
            }
            nulls.append_non_null();
        }
        _ => unreachable!("a column's builders follow its shape"),
    }
    Ok(())
}

/// Appends a null to `col` (and to each child of a record, which a null record masks).
fn append_null(shape: &Shape, col: &mut Col) {
    match (shape, col) {
        (_, Col::Null(n)) => *n += 1,
        (_, Col::Bool(b)) => b.append_null(),
        (_, Col::Int(b)) => b.append_null(),
        (_, Col::Long(b)) => b.append_null(),
        (_, Col::Float(b)) => b.append_null(),
        (_, Col::Double(b)) => b.append_null(),
        (_, Col::Bytes(b)) => b.append_null(),
        (_, Col::Fixed(b)) => b.append_null(),
        (_, Col::String(b)) => b.append_null(),
        (_, Col::Decimal(values, nulls)) => {
            values.push(0);
            nulls.append_null();
        }
        (_, Col::List { offsets, nulls, .. }) | (_, Col::Map { offsets, nulls, .. }) => {
            offsets.push(offsets[offsets.len() - 1]);
            nulls.append_null();
        }
        (
            Shape::Record { children, .. },
            Col::Record {
                nulls,
                children: cs,
            },
        ) => {
            for (s, c) in children.iter().zip(cs) {
                append_null(&s.shape, c);
            }
            nulls.append_null();
        }
        (_, Col::Record { .. }) => unreachable!("a column's builders follow its shape"),
    }
}

/// Relabels an array of `Int32`/`Int64` values as the column's type (a date, time or
/// timestamp of the same width).
fn relabel(a: ArrayRef, data_type: &DataType) -> Result<ArrayRef, ArrowError> {
    if a.data_type() == data_type {
        return Ok(a);
    }
    let data = a
        .into_data()
        .into_builder()
        .data_type(data_type.clone())
        .build()?;
    Ok(make_array(data))
}

fn finish(shape: &Shape, col: Col) -> Result<ArrayRef, ArrowError> {
    Ok(match (shape, col) {
        (_, Col::Null(n)) => Arc::new(NullArray::new(n)),
        (_, Col::Bool(mut b)) => Arc::new(b.finish()),
        (Shape::Int(t), Col::Int(mut b)) => relabel(Arc::new(b.finish()), t)?,
        (Shape::Long(t), Col::Long(mut b)) => relabel(Arc::new(b.finish()), t)?,
        (_, Col::Float(mut b)) => Arc::new(b.finish()),
        (_, Col::Double(mut b)) => Arc::new(b.finish()),
        (_, Col::Bytes(mut b)) => Arc::new(b.finish()),
        (_, Col::Fixed(mut b)) => Arc::new(b.finish()),
        (_, Col::String(mut b)) => Arc::new(b.finish()),
        (Shape::Decimal { data_type, .. }, Col::Decimal(values, mut nulls)) => {
            let nulls = nulls.finish();
            match data_type {
                DataType::Decimal128(..) => {
                    let a = arrow_array::Decimal128Array::new(ScalarBuffer::from(values), nulls);
                    relabel(Arc::new(a), data_type)?
                }
                _ => {
                    let wide: Vec<i256> = values.into_iter().map(i256::from_i128).collect();
                    let a = arrow_array::Decimal256Array::new(ScalarBuffer::from(wide), nulls);
                    relabel(Arc::new(a), data_type)?
                }
            }
        }
        (
            Shape::List { field, item },
            Col::List {
                offsets,
                mut nulls,
                item: c,
            },
        ) => {
            let values = finish(&item.shape, *c)?;
            Arc::new(ListArray::try_new(
                field.clone(),
                OffsetBuffer::new(ScalarBuffer::from(offsets)),
                values,
                nulls.finish(),
            )?)
        }
        (
            Shape::Map {
                entries,
                keys: key_field,
                value,
            },
            Col::Map {
                offsets,
                mut nulls,
                mut keys,
                value: c,
            },
        ) => {
            let DataType::Struct(kv) = entries.data_type() else {
                unreachable!("a map's entries are a struct")
            };
            debug_assert_eq!(&kv[0], key_field);
            let values = finish(&value.shape, *c)?;
            let entries_array = StructArray::try_new(
                kv.clone(),
                vec![Arc::new(keys.finish()) as ArrayRef, values],
                None,
            )?;
            Arc::new(MapArray::try_new(
                entries.clone(),
                OffsetBuffer::new(ScalarBuffer::from(offsets)),
                entries_array,
                nulls.finish(),
                false,
            )?)
        }
        (
            Shape::Record { fields, children },
            Col::Record {
                mut nulls,
                children: cs,
            },
        ) => {
            let arrays = children
                .iter()
                .zip(cs)
                .zip(fields)
                .map(|((s, c), f)| finish(&s.shape, c).map_err(|e| named(f.name(), e)))
                .collect::<Result<Vec<_>, _>>()?;
            Arc::new(StructArray::try_new(
                fields.clone(),
                arrays,
                nulls.finish(),
            )?)
        }
        _ => unreachable!("a column's builders follow its shape"),
    })
}

impl AvroDecoder {
    /// Reads one datum whole, validating it as [`AvroDecoder::to_json`] does, and appends to
    /// `out` a JSON object of only the fields on `paths` (each a path of field names from the
    /// record's top): what a router needs of a record that the direct path will decode.
    pub fn project(
        &self,
        data: &[u8],
        paths: &[Vec<String>],
        out: &mut String,
    ) -> Result<(), WireError> {
        let mut r = Reader { data, at: 0 };
        let wanted: Vec<&[String]> = paths.iter().map(Vec::as_slice).collect();
        project(&self.root, &mut r, &wanted, out)?;
        if r.at != data.len() {
            return Err(WireError::Data {
                at: r.at,
                message: format!("{} bytes left after the datum", data.len() - r.at),
            });
        }
        Ok(())
    }
}

/// Writes the parts of a value on `paths` (relative to it); a value no path enters is skipped.
fn project(
    node: &Node,
    r: &mut Reader<'_>,
    paths: &[&[String]],
    out: &mut String,
) -> Result<(), WireError> {
    match node {
        Node::Record(fields) => {
            out.push('{');
            let mut first = true;
            for (name, f) in fields {
                let on: Vec<&[String]> = paths
                    .iter()
                    .filter(|p| p.first() == Some(name))
                    .map(|p| &p[1..])
                    .collect();
                if on.is_empty() {
                    skip(f, r)?;
                    continue;
                }
                if !std::mem::take(&mut first) {
                    out.push(',');
                }
                crate::wire::write_json_string(name, out);
                out.push(':');
                if on.iter().any(|p| p.is_empty()) {
                    decode(f, r, out)?;
                } else {
                    project(f, r, &on, out)?;
                }
            }
            out.push('}');
        }
        Node::Union(branches) => {
            let b = r.branch(branches)?;
            project(b, r, paths, out)?;
        }
        // Paths into a map or through a value that is no record: the value whole.
        other => decode(other, r, out)?,
    }
    Ok(())
}

/// Reads past one value, validating it as [`decode`] does.
fn skip(node: &Node, r: &mut Reader<'_>) -> Result<(), WireError> {
    match node {
        Node::Null => {}
        Node::Boolean => {
            r.take(1)?;
        }
        Node::Int | Node::Long => {
            r.long()?;
        }
        Node::Float => {
            r.take(4)?;
        }
        Node::Double => {
            r.take(8)?;
        }
        Node::Bytes => {
            let n = r.len()?;
            r.take(n)?;
        }
        Node::Fixed(n) => {
            r.take(*n)?;
        }
        Node::String => {
            let n = r.len()?;
            text(r, n)?;
        }
        Node::Decimal { fixed, .. } => {
            decimal_value(*fixed, r)?;
        }
        Node::Enum(symbols) => {
            let i = r.long()?;
            if usize::try_from(i)
                .ok()
                .and_then(|i| symbols.get(i))
                .is_none()
            {
                return Err(r.err(format!("enum index {i} out of range")));
            }
        }
        Node::Array(items) => blocks(r, |r| skip(items, r))?,
        Node::Map(values) => blocks(r, |r| {
            let n = r.len()?;
            text(r, n)?;
            skip(values, r)
        })?,
        Node::Union(branches) => {
            let b = r.branch(branches)?;
            skip(b, r)?;
        }
        Node::Record(fields) => {
            for (_, f) in fields {
                skip(f, r)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "avro_arrow_tests.rs"]
mod tests;
