#![warn(unreachable_pub)]
//! Lakesink lands Kafka topics in object storage as a hive-partitioned data lake.
//!
//! # Layout
//! One module per pipeline stage, each with its own error type:
//!
//! | module | stage |
//! |---|---|
//! | [`consume`] | the consumer-group member: polls, batches records per partition, handles rebalances, commits |
//! | [`route`] | event time and Hive partition path of each record (pure) |
//! | [`encode`] | gzip NDJSON and Parquet encoders |
//! | [`rotate`] | when a partition's open files are cut (pure) |
//! | [`upload`] | streams objects to the store (single PUT or multipart) |
//! | [`catalog`] | tells the table catalog about new partitions |
//! | [`commit`] | the offset ledger: which offset is safe to commit (pure) |
//! | [`claim`] | segment claims in the store: where each partition's segments were cut |
//! | [`seal`] | sealed partitions: a manifest per partition once the watermark passes its span |
//! | [`compact`] | sealed partitions rewritten into few large files, the catalog switched in one call |
//!
//! and around them: [`config`] (the TOML text, `${VAR}` substituted → the file as written, typed
//! → a validated [`config::Plan`]), [`metrics`] (Prometheus series and the health state),
//! [`http`] (`/metrics`, `/healthz`, `/readyz`), [`logging`] (text or JSON, repeats held back,
//! the steady line), [`batch`] (what
//! the consumer hands a worker), [`writer`] (a partition's open segment: its files, dead
//! letters, sealed segments and the replay of claims), [`worker`] (threads that own writers),
//! [`pipeline`] (wiring and shutdown), [`storage`] (opening the object store), [`columns`] (a
//! table's columns in Hive and Trino types, for [`ddl`] and the catalogs), [`check`], [`status`], [`verify`] (the
//! completeness audit), [`watermark`] (each table's completeness watermark), [`upkeep`] (the
//! daemon's task that computes it, seals and compacts), [`demo`],
//! [`generator`] (CloudTrail-shaped events) and [`mock`] (the embedded broker), [`kafka`]
//! (librdkafka's configuration, authentication and offset readers), `memory` (the budget),
//! `retry` (the one backoff policy), `stats` (run totals), `fatal` (how background work
//! stops the daemon), `schemas` (a registry's schemas of a table), `units` (sizes and
//! durations in the config) and `failpoint` (crash-test hooks). `docs/DESIGN.md` states the invariants and why they hold;
//! `docs/OPERATING.md` what a running daemon shows and how it exits.
//!
//! Public are the modules the binary, the end-to-end tests and the benchmark use; the others
//! are the crate's own, and `unreachable_pub` warns of a `pub` item no other crate can reach.

mod batch;
pub mod catalog;
pub mod check;
pub mod claim;
mod columns;
pub mod commit;
pub mod compact;
pub mod config;
pub mod consume;
pub mod ddl;
pub mod demo;
pub mod encode;
pub mod error;
mod failpoint;
mod fatal;
pub mod generator;
mod http;
pub mod kafka;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod mock;
mod pipeline;
mod retry;
mod rotate;
pub mod route;
mod schemas;
pub mod seal;
mod stats;
pub mod status;
pub mod storage;
mod units;
mod upkeep;
mod upload;
pub mod verify;
pub mod watermark;
mod worker;
mod writer;

pub use config::Plan;
pub use consume::Control;
pub use error::Error;
pub use pipeline::{run, Summary};
pub use stats::Stats;
