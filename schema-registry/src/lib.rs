//! Schema sources for Lakesink's Parquet tables: files in `schema-registry/schemas/` and
//! Confluent-compatible registries, the Confluent wire format, and conversion to Arrow.
//!
//! [`avro`] and [`json_schema`] convert schemas to Arrow; [`source`] finds a table's schema
//! file (or a built-in copy of the shipped ones in `schemas/`); [`registry`] asks a
//! Confluent-compatible registry; [`wire`] reads the Confluent wire format and Avro binary; [`avro_arrow`] decodes Avro binary
//! straight into Arrow arrays.

pub mod avro;
pub mod avro_arrow;
pub mod avro_write;
pub mod json_schema;
pub mod registry;
pub mod source;
pub mod wire;
