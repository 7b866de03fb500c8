//! The builders the direct path fills: one per column, each able to be cut back to a row
//! count, and finished into Arrow arrays.

use std::sync::Arc;

use arrow_array::types::{
    Float64Type, Int32Type, Int64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, ListArray, PrimitiveArray, RecordBatch, StringArray, StructArray,
};
use arrow_buffer::{BooleanBufferBuilder, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, TimeUnit};

use super::{JsonDirect, Kind};

/// Rows of a schema being built: a file's, or a writer's staging row.
#[derive(Debug, Default)]
pub struct JsonRows {
    pub(super) cols: Vec<B>,
    pub(super) rows: usize,
    /// Per struct (by id), per field index (and one past the last, for the first key): the
    /// field whose key came next last time. Producers write an object's keys in the same order
    /// every time, so a key is found in one comparison, not by a search of the fields.
    pub(super) follow: Vec<Vec<u16>>,
}

/// One column's builders. Every column can be cut back to a row count ([`B::truncate`]), so a
/// record the direct path gives up on half-way leaves no trace.
#[derive(Debug)]
pub(super) enum B {
    Utf8 {
        offsets: Vec<i32>,
        data: Vec<u8>,
        valid: BooleanBufferBuilder,
    },
    Bool {
        values: BooleanBufferBuilder,
        valid: BooleanBufferBuilder,
    },
    Int32 {
        values: Vec<i32>,
        valid: BooleanBufferBuilder,
    },
    Int64 {
        values: Vec<i64>,
        valid: BooleanBufferBuilder,
    },
    Float64 {
        values: Vec<f64>,
        valid: BooleanBufferBuilder,
    },
    Struct {
        children: Vec<B>,
        valid: BooleanBufferBuilder,
    },
    List {
        offsets: Vec<i32>,
        item: Box<B>,
        valid: BooleanBufferBuilder,
    },
}

pub(super) fn builder(kind: &Kind) -> B {
    let valid = || BooleanBufferBuilder::new(0);
    match kind {
        Kind::Utf8 => B::Utf8 {
            offsets: vec![0],
            data: Vec::new(),
            valid: valid(),
        },
        Kind::Bool => B::Bool {
            values: BooleanBufferBuilder::new(0),
            valid: valid(),
        },
        Kind::Int32 => B::Int32 {
            values: Vec::new(),
            valid: valid(),
        },
        Kind::Int64 | Kind::Timestamp { .. } => B::Int64 {
            values: Vec::new(),
            valid: valid(),
        },
        Kind::Float64 => B::Float64 {
            values: Vec::new(),
            valid: valid(),
        },
        Kind::Struct { cols, .. } => B::Struct {
            children: cols.iter().map(|c| builder(&c.kind)).collect(),
            valid: valid(),
        },
        Kind::List { item, .. } => B::List {
            offsets: vec![0],
            item: Box::new(builder(&item.kind)),
            valid: valid(),
        },
    }
}

impl B {
    fn valid(&mut self) -> &mut BooleanBufferBuilder {
        match self {
            B::Utf8 { valid, .. }
            | B::Bool { valid, .. }
            | B::Int32 { valid, .. }
            | B::Int64 { valid, .. }
            | B::Float64 { valid, .. }
            | B::Struct { valid, .. }
            | B::List { valid, .. } => valid,
        }
    }

    fn valid_ref(&self) -> &BooleanBufferBuilder {
        match self {
            B::Utf8 { valid, .. }
            | B::Bool { valid, .. }
            | B::Int32 { valid, .. }
            | B::Int64 { valid, .. }
            | B::Float64 { valid, .. }
            | B::Struct { valid, .. }
            | B::List { valid, .. } => valid,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.valid_ref().len()
    }

    /// Appends a null (to a struct's children too: its null masks them).
    pub(super) fn null(&mut self) {
        match self {
            B::Utf8 { offsets, data, .. } => offsets.push(data.len() as i32),
            B::Bool { values, .. } => values.append(false),
            B::Int32 { values, .. } => values.push(0),
            B::Int64 { values, .. } => values.push(0),
            B::Float64 { values, .. } => values.push(0.0),
            B::Struct { children, .. } => children.iter_mut().for_each(B::null),
            B::List { offsets, .. } => offsets.push(offsets[offsets.len() - 1]),
        }
        self.valid().append(false);
    }

    fn truncate(&mut self, n: usize) {
        match self {
            B::Utf8 { offsets, data, .. } => {
                offsets.truncate(n + 1);
                data.truncate(offsets[n] as usize);
            }
            B::Bool { values, .. } => values.truncate(n),
            B::Int32 { values, .. } => values.truncate(n),
            B::Int64 { values, .. } => values.truncate(n),
            B::Float64 { values, .. } => values.truncate(n),
            B::Struct { children, .. } => children.iter_mut().for_each(|c| c.truncate(n)),
            B::List { offsets, item, .. } => {
                offsets.truncate(n + 1);
                item.truncate(offsets[n] as usize);
            }
        }
        self.valid().truncate(n);
    }

    /// Appends row `row` of `src` (the same shape).
    fn push_row(&mut self, src: &B, row: usize) {
        let valid = src.valid_ref().get_bit(row);
        match (&mut *self, src) {
            (
                B::Utf8 { offsets, data, .. },
                B::Utf8 {
                    offsets: so,
                    data: sd,
                    ..
                },
            ) => {
                data.extend_from_slice(&sd[so[row] as usize..so[row + 1] as usize]);
                offsets.push(data.len() as i32);
            }
            (B::Bool { values, .. }, B::Bool { values: sv, .. }) => values.append(sv.get_bit(row)),
            (B::Int32 { values, .. }, B::Int32 { values: sv, .. }) => values.push(sv[row]),
            (B::Int64 { values, .. }, B::Int64 { values: sv, .. }) => values.push(sv[row]),
            (B::Float64 { values, .. }, B::Float64 { values: sv, .. }) => values.push(sv[row]),
            (B::Struct { children, .. }, B::Struct { children: sc, .. }) => {
                for (c, s) in children.iter_mut().zip(sc) {
                    c.push_row(s, row);
                }
            }
            (
                B::List { offsets, item, .. },
                B::List {
                    offsets: so,
                    item: si,
                    ..
                },
            ) => {
                for i in so[row] as usize..so[row + 1] as usize {
                    item.push_row(si, i);
                }
                offsets.push(item.len() as i32);
            }
            _ => unreachable!("rows of one schema"),
        }
        self.valid().append(valid);
    }

    /// Bytes held (capacity), for the memory budget.
    fn memory(&self) -> usize {
        let bits = |b: &BooleanBufferBuilder| b.capacity() / 8;
        match self {
            B::Utf8 {
                offsets,
                data,
                valid,
            } => offsets.capacity() * 4 + data.capacity() + bits(valid),
            B::Bool { values, valid } => bits(values) + bits(valid),
            B::Int32 { values, valid } => values.capacity() * 4 + bits(valid),
            B::Int64 { values, valid } => values.capacity() * 8 + bits(valid),
            B::Float64 { values, valid } => values.capacity() * 8 + bits(valid),
            B::Struct { children, valid } => {
                children.iter().map(B::memory).sum::<usize>() + bits(valid)
            }
            B::List {
                offsets,
                item,
                valid,
            } => offsets.capacity() * 4 + item.memory() + bits(valid),
        }
    }

    /// The column's array; the builders are left empty, with room for as many values again
    /// when `again`.
    fn finish(&mut self, kind: &Kind, again: bool) -> Result<ArrayRef, ArrowError> {
        let room = |n: usize| if again { n } else { 0 };
        let take_nulls = |valid: &mut BooleanBufferBuilder| {
            let n = NullBuffer::new(valid.finish());
            (n.null_count() > 0).then_some(n)
        };
        Ok(match (self, kind) {
            (
                B::Utf8 {
                    offsets,
                    data,
                    valid,
                },
                _,
            ) => {
                let mut next = Vec::with_capacity(room(offsets.len()).max(1));
                next.push(0);
                let offsets = std::mem::replace(offsets, next);
                let data = std::mem::replace(data, Vec::with_capacity(room(data.len())));
                let nulls = take_nulls(valid);
                // SAFETY: the offsets grow monotonically from 0 to `data.len()`, and every
                // value appended was a whole `&str` (or the JSON text of one), so each slice
                // between two offsets is valid UTF-8.
                Arc::new(unsafe {
                    StringArray::new_unchecked(
                        OffsetBuffer::new_unchecked(ScalarBuffer::from(offsets)),
                        Buffer::from_vec(data),
                        nulls,
                    )
                })
            }
            (B::Bool { values, valid }, _) => {
                let nulls = take_nulls(valid);
                Arc::new(BooleanArray::new(values.finish(), nulls))
            }
            (B::Int32 { values, valid }, _) => Arc::new(PrimitiveArray::<Int32Type>::new(
                reuse(values, again).into(),
                take_nulls(valid),
            )),
            (
                B::Int64 { values, valid },
                Kind::Timestamp {
                    unit, data_type, ..
                },
            ) => {
                let values: ScalarBuffer<i64> = reuse(values, again).into();
                let nulls = take_nulls(valid);
                let a: ArrayRef = match unit {
                    TimeUnit::Second => {
                        Arc::new(PrimitiveArray::<TimestampSecondType>::new(values, nulls))
                    }
                    TimeUnit::Millisecond => Arc::new(
                        PrimitiveArray::<TimestampMillisecondType>::new(values, nulls),
                    ),
                    TimeUnit::Microsecond => Arc::new(
                        PrimitiveArray::<TimestampMicrosecondType>::new(values, nulls),
                    ),
                    TimeUnit::Nanosecond => Arc::new(
                        PrimitiveArray::<TimestampNanosecondType>::new(values, nulls),
                    ),
                };
                let data = a.into_data().into_builder().data_type(data_type.clone());
                arrow_array::make_array(data.build()?)
            }
            (B::Int64 { values, valid }, _) => Arc::new(PrimitiveArray::<Int64Type>::new(
                reuse(values, again).into(),
                take_nulls(valid),
            )),
            (B::Float64 { values, valid }, _) => Arc::new(PrimitiveArray::<Float64Type>::new(
                reuse(values, again).into(),
                take_nulls(valid),
            )),
            (B::Struct { children, valid }, Kind::Struct { fields, cols, .. }) => {
                let nulls = take_nulls(valid);
                let arrays = children
                    .iter_mut()
                    .zip(cols)
                    .map(|(c, col)| c.finish(&col.kind, again))
                    .collect::<Result<Vec<_>, _>>()?;
                Arc::new(StructArray::try_new(fields.clone(), arrays, nulls)?)
            }
            (
                B::List {
                    offsets,
                    item,
                    valid,
                },
                Kind::List { field, item: ic },
            ) => {
                let offsets = std::mem::replace(offsets, vec![0]);
                let nulls = take_nulls(valid);
                let values = item.finish(&ic.kind, again)?;
                Arc::new(ListArray::try_new(
                    field.clone(),
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    values,
                    nulls,
                )?)
            }
            _ => unreachable!("builders follow their column's kind"),
        })
    }
}

impl JsonRows {
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn truncate(&mut self, rows: usize) {
        for c in &mut self.cols {
            c.truncate(rows);
        }
        self.rows = rows.min(self.rows);
    }

    /// Appends row `row` of `src` (rows of the same schema).
    pub fn push_row(&mut self, src: &JsonRows, row: usize) {
        for (c, s) in self.cols.iter_mut().zip(&src.cols) {
            c.push_row(s, row);
        }
        self.rows += 1;
    }

    /// Bytes the builders hold, for the memory budget.
    pub fn memory(&self) -> usize {
        self.cols.iter().map(B::memory).sum()
    }

    /// The rows as one batch of `plan`'s schema; the rows are left empty. With `again`, the
    /// builders keep room for as many rows (a full batch: more rows are on their way); without,
    /// they hold nothing until the next row (a file settled may wait long for its next rows,
    /// and room kept in thousands of such files is memory the budget does not see).
    pub fn finish(&mut self, plan: &JsonDirect, again: bool) -> Result<RecordBatch, ArrowError> {
        let arrays = self
            .cols
            .iter_mut()
            .zip(&plan.root)
            .map(|(b, c)| b.finish(&c.kind, again))
            .collect::<Result<Vec<_>, _>>()?;
        let rows = std::mem::take(&mut self.rows);
        RecordBatch::try_new_with_options(
            plan.schema.clone(),
            arrays,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
    }
}

/// The values, leaving room for as many in their place when `again` (the next batch is about
/// as long), or nothing.
fn reuse<T>(values: &mut Vec<T>, again: bool) -> Vec<T> {
    let n = if again { values.len() } else { 0 };
    std::mem::replace(values, Vec::with_capacity(n))
}
