//! Schema sources for Lakesink's Parquet tables: files in `schema-registry/schemas/` and
//! Confluent-compatible registries, the Confluent wire format, and conversion to Arrow.
//!
//! The core pipeline writes schema-less gzip NDJSON and does not use this crate yet; Parquet
//! output (issue #3) is built on it. So far: Avro and JSON Schema to Arrow ([`avro`], [`json_schema`]) and the schemas
//! of the demo data in `schema-registry/schemas/`.

pub mod avro;
pub mod json_schema;
