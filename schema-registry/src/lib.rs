//! Schema sources for Lakesink's Parquet tables: files in `schema-registry/schemas/` and
//! Confluent-compatible registries, the Confluent wire format, and conversion to Arrow.
//!
//! The core pipeline writes schema-less gzip NDJSON and does not use this crate yet; Parquet
//! output (issue #3) fills it in.
