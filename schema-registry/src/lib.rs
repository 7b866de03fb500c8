//! Schema sources for Lakesink's Parquet tables: files in `schema-registry/schemas/` and
//! Confluent-compatible registries, the Confluent wire format, and conversion to Arrow.
//!
//! [`avro`] and [`json_schema`] convert schemas to Arrow; [`source`] finds a table's schema
//! file (or a built-in copy of the shipped ones in `schemas/`).

pub mod avro;
pub mod json_schema;
pub mod source;
