//! The configuration file: serde structs that mirror the TOML one to one, parsed strictly
//! (`deny_unknown_fields`, so a typo is an error naming the key and its line) and then validated
//! once into a typed [`Plan`] that the pipeline runs from. Nothing after [`Plan::from_toml`]
//! parses a string from the config again.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

pub use crate::encode::parquet::ParquetOptions;
use crate::encode::ParquetPlan;
use crate::route::template::{PartitionTemplate, TemplateError};
use crate::route::timestamp::{TimeZoneSpec, TimestampSource, TimestampUnit};
pub use crate::route::MissingTimestamp;
pub use crate::schemas::TableSchema;
use crate::units::{parse_bytes, parse_duration, UnitError};

/// Everything that can be wrong with a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: table `{table}`: {message}")]
    Table {
        path: String,
        table: String,
        message: String,
    },
    #[error("{path}: {key}: {source}")]
    Unit {
        path: String,
        key: String,
        #[source]
        source: UnitError,
    },
    #[error("{path}: table `{table}`: partition_by: {source}")]
    Template {
        path: String,
        table: String,
        #[source]
        source: TemplateError,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

// ---------------------------------------------------------------------------------------------
// The file as written.
// ---------------------------------------------------------------------------------------------

/// The TOML file, key for key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub kafka: KafkaSection,
    pub storage: StorageSection,
    #[serde(default)]
    pub pipeline: PipelineSection,
    #[serde(default)]
    pub catalog: CatalogSection,
    #[serde(default)]
    pub dead_letter: DeadLetterSection,
    #[serde(default)]
    pub tables: Vec<TableSection>,
}

/// `[dead_letter]`: where bad records go for tables with `on_bad_record = "dlq"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterSection {
    /// `objects` (default): gzip NDJSON envelopes under `{storage.url}/{prefix}/{table}/`;
    /// `kafka`: the original record (key, value, headers) to `topic`, with `lakesink.*` headers
    /// that say why, on the brokers of `[kafka]`.
    #[serde(default = "default_dead_letter_kind")]
    pub kind: String,
    #[serde(default = "default_dead_letter_prefix")]
    pub prefix: String,
    #[serde(default)]
    pub topic: Option<String>,
}

fn default_dead_letter_kind() -> String {
    "objects".into()
}
fn default_dead_letter_prefix() -> String {
    "_errors".into()
}

impl Default for DeadLetterSection {
    fn default() -> Self {
        Self {
            kind: default_dead_letter_kind(),
            prefix: default_dead_letter_prefix(),
            topic: None,
        }
    }
}

/// `[catalog]`: where new partitions are registered, one catalog per daemon.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSection {
    /// `none` (default), `glue`, `hive` or `webhook`.
    #[serde(default)]
    pub kind: Option<String>,
    /// Glue and Hive: the database the tables live in (tables may override it).
    #[serde(default)]
    pub database: Option<String>,
    /// Glue and Hive: create the database and tables when they do not exist.
    #[serde(default)]
    pub create_table: bool,
    /// Glue: the AWS region (default: `AWS_REGION`, then `us-east-1`).
    #[serde(default)]
    pub region: Option<String>,
    /// Glue: endpoint override (moto, LocalStack, Glue-compatible services).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Glue: static credentials; by default the standard AWS chain (environment, web
    /// identity, container and instance metadata).
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub session_token: Option<String>,
    /// Hive: `thrift://host:9083`.
    #[serde(default)]
    pub uri: Option<String>,
    /// Webhook: where each new partition is POSTed.
    #[serde(default)]
    pub url: Option<String>,
    /// Webhook: HMAC-SHA256 key for the `X-Lakesink-Signature` header.
    #[serde(default)]
    pub secret: Option<String>,
    /// Timeout of one catalog call.
    #[serde(default = "default_catalog_timeout")]
    pub timeout: String,
}

fn default_catalog_timeout() -> String {
    "10s".into()
}

impl Default for CatalogSection {
    fn default() -> Self {
        Self {
            kind: None,
            database: None,
            create_table: false,
            region: None,
            endpoint: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            uri: None,
            url: None,
            secret: None,
            timeout: default_catalog_timeout(),
        }
    }
}

/// `[kafka]`: where the consumer group reads from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub brokers: String,
    /// The consumer group; every Lakesink instance of one deployment uses the same one.
    pub group_id: String,
    /// Any librdkafka consumer property (SASL, TLS, timeouts…). A few that would break the
    /// commit protocol (`enable.auto.commit`, …) are refused.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// `[storage]`: the object store the lake lives in.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// `s3://bucket/prefix`, `gs://…`, `az://…`, `file:///abs/dir`, `memory://`.
    pub url: String,
    /// object_store options (endpoint, region, allow_http, access keys…). Environment variables
    /// (`AWS_*`, `GOOGLE_*`, `AZURE_*`) are read as well; these take precedence.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// How long one request to the store is retried (5xx, SlowDown, 429, timeouts, resets),
    /// with exponential backoff and jitter, before its error stops the daemon. At most `14m`:
    /// a request keeps its signature across retries, and S3 refuses one over 15 minutes old.
    #[serde(default = "default_retry_timeout")]
    pub retry_timeout: String,
    /// What to do when the store does not refuse a second create-only write, so segment
    /// claims cannot fence a writer that lost its partition (the daemon probes at start).
    #[serde(default)]
    pub unfenced: Unfenced,
}

fn default_retry_timeout() -> String {
    "10m".into()
}

/// `storage.unfenced`: how the daemon runs on a store that does not enforce create-only writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unfenced {
    /// Refuse to start: a zombie writer could overwrite records.
    #[default]
    Refuse,
    /// Run at least once: a file not replaying a claim gets a key of its writer's own, so a
    /// zombie's differently cut file never replaces another's (it may duplicate records).
    AtLeastOnce,
}

/// `[pipeline]`: daemon-wide limits. Every key has a default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    /// Upper bound for the bytes held by open files and uploads in flight, all tables together.
    #[serde(default = "default_max_buffered")]
    pub max_buffered_bytes: String,
    /// Size of one multipart-upload part (≥ 5 MiB, S3's minimum).
    #[serde(default = "default_part_size")]
    pub part_size: String,
    /// Encoding threads; 0 means one per core.
    #[serde(default)]
    pub workers: usize,
    /// How long SIGTERM may spend uploading and committing before the daemon gives up.
    #[serde(default = "default_drain_timeout")]
    pub drain_timeout: String,
    /// How often finished segments are committed to Kafka.
    #[serde(default = "default_commit_interval")]
    pub commit_interval: String,
    /// How long commits may keep failing with errors worth retrying (coordinator moving,
    /// timeouts) before the daemon stops. Permanent errors (authorization) stop it at once.
    #[serde(default = "default_commit_timeout")]
    pub commit_timeout: String,
}

fn default_max_buffered() -> String {
    "1GiB".into()
}
fn default_part_size() -> String {
    "8MiB".into()
}
fn default_drain_timeout() -> String {
    "120s".into()
}
fn default_commit_interval() -> String {
    "1s".into()
}
fn default_commit_timeout() -> String {
    "5m".into()
}

impl Default for PipelineSection {
    fn default() -> Self {
        Self {
            max_buffered_bytes: default_max_buffered(),
            part_size: default_part_size(),
            workers: 0,
            drain_timeout: default_drain_timeout(),
            commit_interval: default_commit_interval(),
            commit_timeout: default_commit_timeout(),
        }
    }
}

/// `[[tables]]`: one table of the lake.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSection {
    /// Objects go under `{storage.url}/{name}/`.
    pub name: String,
    /// Topics whose records land in this table.
    pub topics: Vec<String>,
    /// `json.gz` or `parquet`.
    #[serde(default = "default_format")]
    pub format: String,
    /// The table's schema: `{ file = "cloudtrail.avsc" }`. Required for `parquet`; for
    /// `json.gz` it only gives `lakesink ddl` and `catalog.create_table` their columns.
    #[serde(default)]
    pub schema: Option<SchemaSection>,
    /// Parquet writer settings (`format = "parquet"` only).
    #[serde(default)]
    pub parquet: Option<ParquetSection>,
    /// Hive-style partition template: literal text, `{event_time:STRFTIME}`, `{topic}`,
    /// `{partition}` and `{field:a.b}`.
    #[serde(default = "default_partition_by")]
    pub partition_by: String,
    /// Where the event time comes from: `{ field = "eventTime" }` (with optional
    /// `unit = "auto" | "rfc3339" | "s" | "ms" | "us"`) or `"kafka"`.
    #[serde(default)]
    pub timestamp: Option<TimestampSection>,
    /// `UTC`, an IANA zone (`Europe/Berlin`) or a fixed offset (`+02:00`).
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// What a record without a usable event time does: `kafka` (use the Kafka timestamp),
    /// `fail` (stop with an error), `dlq` (to the dead-letter destination).
    #[serde(default = "default_on_missing_timestamp")]
    pub on_missing_timestamp: String,
    /// Event times further than this ahead of the record's Kafka timestamp are not trusted.
    #[serde(default = "default_max_future_skew")]
    pub max_future_skew: String,
    /// What an unusable record (not a JSON object, not UTF-8, empty, too large) does: `fail`
    /// (stop with an error) or `dlq` (to the dead-letter destination).
    #[serde(default = "default_on_bad_record")]
    pub on_bad_record: String,
    /// Records larger than this are bad records.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: String,
    /// gzip level 0–9 for `json.gz`.
    #[serde(default = "default_compression_level")]
    pub compression_level: u32,
    #[serde(default)]
    pub rotate: RotateSection,
    /// The table's name in the catalog (default: `name`).
    #[serde(default)]
    pub catalog_table: Option<String>,
    /// The table's database in the catalog (default: `catalog.database`).
    #[serde(default)]
    pub catalog_database: Option<String>,
}

/// `schema = { … }` of a table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaSection {
    /// An Avro `.avsc` or JSON Schema `.json` file, looked up next to the config file, in
    /// `schema-registry/schemas/` beside it and below the working directory, then among the
    /// schemas built into the binary.
    pub file: Option<String>,
    /// A Confluent-compatible schema registry (`http://redpanda:8081`): the subject's latest
    /// schema, and each Confluent-framed record's own schema by its id.
    pub registry: Option<String>,
    /// The registry subject (`cloudtrail-value`).
    pub subject: Option<String>,
    /// HTTP basic auth for the registry.
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM file of CA certificates for an `https://` registry.
    pub ca_file: Option<String>,
}

/// `[tables.parquet]`: how Parquet files are written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetSection {
    /// `zstd` (default), `snappy`, `gzip`, `lz4` or `none`.
    #[serde(default = "default_parquet_compression")]
    pub compression: String,
    /// Level for zstd (1–22, default 3) and gzip (0–9, default 6).
    #[serde(default)]
    pub compression_level: Option<i32>,
    /// A row group holds at most this many rows…
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// …and at most this much Arrow data (the settled rows a file holds until the row group is
    /// written).
    #[serde(default = "default_row_group_bytes")]
    pub row_group_bytes: String,
    /// Min/max statistics: `page` (default: column index and chunk), `chunk` or `none`.
    #[serde(default = "default_statistics")]
    pub statistics: String,
    /// Dictionary encoding (falls back to plain per page when a dictionary grows large).
    #[serde(default = "default_true")]
    pub dictionary: bool,
    /// Columns (dotted paths into structs: `userIdentity.arn`) that get a bloom filter.
    #[serde(default)]
    pub bloom_filters: Vec<String>,
    /// False-positive rate of the bloom filters.
    #[serde(default = "default_bloom_fpp")]
    pub bloom_filter_fpp: f64,
    /// A JSON field the schema lacks: `drop` (default) or `fail` (a bad record).
    #[serde(default = "default_unknown_fields")]
    pub unknown_fields: String,
}

impl Default for ParquetSection {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

impl ParquetSection {
    /// The validated settings: choices and sizes parsed once, at load.
    pub fn validate(&self) -> Result<ParquetOptions, String> {
        use parquet::basic::{Compression, GzipLevel, ZstdLevel};
        use parquet::file::properties::EnabledStatistics;

        let p = self;
        let level_err =
            |e: parquet::errors::ParquetError| format!("parquet.compression_level: {e}");
        let compression = match p.compression.as_str() {
            "zstd" => Compression::ZSTD(
                ZstdLevel::try_new(p.compression_level.unwrap_or(3)).map_err(level_err)?,
            ),
            "gzip" => Compression::GZIP(
                GzipLevel::try_new(p.compression_level.unwrap_or(6) as u32).map_err(level_err)?,
            ),
            "snappy" => Compression::SNAPPY,
            "lz4" => Compression::LZ4_RAW,
            "none" | "uncompressed" => Compression::UNCOMPRESSED,
            other => {
                return Err(format!(
                    "parquet.compression = \"{other}\": use zstd, snappy, gzip, lz4 or none"
                ))
            }
        };
        let statistics = match p.statistics.as_str() {
            "page" => EnabledStatistics::Page,
            "chunk" => EnabledStatistics::Chunk,
            "none" => EnabledStatistics::None,
            other => {
                return Err(format!(
                    "parquet.statistics = \"{other}\": use page, chunk or none"
                ))
            }
        };
        let strict = match p.unknown_fields.as_str() {
            "drop" => false,
            "fail" => true,
            other => {
                return Err(format!(
                    "parquet.unknown_fields = \"{other}\": use drop or fail"
                ))
            }
        };
        if p.row_group_rows == 0 {
            return Err("parquet.row_group_rows must be at least 1".into());
        }
        let row_group_bytes =
            parse_bytes(&p.row_group_bytes).map_err(|e| format!("parquet.row_group_bytes: {e}"))?;
        if row_group_bytes == 0 {
            return Err("parquet.row_group_bytes must be positive".into());
        }
        if !(p.bloom_filter_fpp > 0.0 && p.bloom_filter_fpp < 1.0) {
            return Err("parquet.bloom_filter_fpp must be between 0 and 1".into());
        }
        Ok(ParquetOptions {
            compression,
            statistics,
            dictionary: p.dictionary,
            row_group_rows: p.row_group_rows,
            row_group_bytes: row_group_bytes as usize,
            bloom_filters: p.bloom_filters.clone(),
            bloom_filter_fpp: p.bloom_filter_fpp,
            strict,
        })
    }
}

fn default_parquet_compression() -> String {
    "zstd".into()
}
fn default_row_group_rows() -> usize {
    128 * 1024
}
fn default_row_group_bytes() -> String {
    "64MiB".into()
}
fn default_statistics() -> String {
    "page".into()
}
fn default_true() -> bool {
    true
}
fn default_bloom_fpp() -> f64 {
    0.01
}
fn default_unknown_fields() -> String {
    "drop".into()
}

fn default_format() -> String {
    "json.gz".into()
}
fn default_partition_by() -> String {
    "date={event_time:%Y-%m-%d}/hour={event_time:%H}".into()
}
fn default_timezone() -> String {
    "UTC".into()
}
fn default_on_missing_timestamp() -> String {
    "fail".into()
}
fn default_on_bad_record() -> String {
    "fail".into()
}
fn default_max_record_bytes() -> String {
    "10MiB".into()
}
fn default_max_future_skew() -> String {
    "1h".into()
}
fn default_compression_level() -> u32 {
    6
}

/// `timestamp = …` in a table.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum TimestampSection {
    /// `timestamp = "kafka"`.
    Named(String),
    /// `timestamp = { field = "eventTime", unit = "auto" }`.
    Field {
        field: String,
        #[serde(default)]
        unit: Option<String>,
    },
}

/// `[tables.rotate]`: when an open file is closed and uploaded.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateSection {
    #[serde(default = "default_max_records")]
    pub max_records: u64,
    #[serde(default = "default_max_bytes")]
    pub max_bytes: String,
    #[serde(default = "default_max_age")]
    pub max_age: String,
}

fn default_max_records() -> u64 {
    500_000
}
fn default_max_bytes() -> String {
    "128MiB".into()
}
fn default_max_age() -> String {
    "5m".into()
}

impl Default for RotateSection {
    fn default() -> Self {
        Self {
            max_records: default_max_records(),
            max_bytes: default_max_bytes(),
            max_age: default_max_age(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The validated plan.
// ---------------------------------------------------------------------------------------------

/// The configuration after validation: what the pipeline runs from.
#[derive(Clone)]
pub struct Plan {
    pub source: String,
    pub kafka: KafkaPlan,
    pub storage: StoragePlan,
    pub pipeline: PipelinePlan,
    pub catalog: CatalogPlan,
    /// Path prefix of dead-letter objects below `storage.url` (e.g. `_errors`).
    pub dead_letter_prefix: String,
    /// With `dead_letter.kind = "kafka"`: the topic dead letters are produced to.
    pub dead_letter_topic: Option<String>,
    pub tables: Vec<TablePlan>,
}

/// The validated `[catalog]`.
#[derive(Clone, Debug)]
pub enum CatalogPlan {
    None,
    Glue(GluePlan),
    Hive(HivePlan),
    Webhook(WebhookPlan),
}

impl CatalogPlan {
    pub fn kind(&self) -> &'static str {
        match self {
            CatalogPlan::None => "none",
            CatalogPlan::Glue(_) => "glue",
            CatalogPlan::Hive(_) => "hive",
            CatalogPlan::Webhook(_) => "webhook",
        }
    }
}

#[derive(Clone)]
pub struct GluePlan {
    pub database: String,
    pub region: String,
    pub endpoint: Option<url::Url>,
    pub create_table: bool,
    /// (access key id, secret, session token); `None`: the standard credential chain.
    pub credentials: Option<(String, String, Option<String>)>,
    pub timeout: Duration,
}

impl fmt::Debug for GluePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GluePlan")
            .field("database", &self.database)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint.as_ref().map(url::Url::as_str))
            .field("create_table", &self.create_table)
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|(id, _, _)| format!("{id}:***")),
            )
            .finish()
    }
}

#[derive(Clone, Debug)]
pub struct HivePlan {
    /// `host:port` of the metastore's Thrift endpoint.
    pub address: String,
    pub database: String,
    pub create_table: bool,
    pub timeout: Duration,
}

#[derive(Clone)]
pub struct WebhookPlan {
    pub url: url::Url,
    pub secret: Option<String>,
    pub timeout: Duration,
}

impl fmt::Debug for WebhookPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookPlan")
            .field("url", &self.url.as_str())
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .finish()
    }
}

#[derive(Clone)]
pub struct KafkaPlan {
    pub brokers: String,
    pub group_id: String,
    pub properties: BTreeMap<String, String>,
}

#[derive(Clone)]
pub struct StoragePlan {
    pub url: url::Url,
    pub options: BTreeMap<String, String>,
    pub retry_timeout: Duration,
    pub unfenced: Unfenced,
}

#[derive(Clone, Debug)]
pub struct PipelinePlan {
    pub max_buffered_bytes: u64,
    pub part_size: usize,
    pub workers: usize,
    pub drain_timeout: Duration,
    pub commit_interval: Duration,
    /// See [`PipelineSection::commit_timeout`].
    pub commit_timeout: Duration,
}

/// Output format of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    JsonGz,
    Parquet,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::JsonGz => "json.gz",
            Format::Parquet => "parquet",
        }
    }
}

/// What a bad record (not valid JSON, not UTF-8, empty, too large) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadRecord {
    Fail,
    DeadLetter,
}

/// Rotation limits of one table; see [`crate::rotate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotateLimits {
    pub max_records: u64,
    pub max_bytes: u64,
    pub max_age: Duration,
}

#[derive(Clone, Debug)]
pub struct TablePlan {
    pub name: String,
    pub topics: Vec<String>,
    pub format: Format,
    pub partition: PartitionTemplate,
    pub timestamp: TimestampSource,
    pub timezone: TimeZoneSpec,
    pub on_missing_timestamp: MissingTimestamp,
    pub max_future_skew: Duration,
    pub compression_level: u32,
    pub rotate: RotateLimits,
    pub on_bad_record: BadRecord,
    pub max_record_bytes: u64,
    pub catalog_table: Option<String>,
    pub catalog_database: Option<String>,
    /// The table's schema, if it has one (always for Parquet).
    pub schema: Option<Arc<TableSchema>>,
    /// Parquet tables: schema and writer settings (for a registry table, of the latest
    /// schema once resolved; records of other ids use [`crate::schemas::TableRegistry::plan_for`]).
    pub parquet: Option<Arc<ParquetPlan>>,
    /// Parquet tables: the writer settings.
    pub parquet_options: Option<Arc<ParquetOptions>>,
    /// Tables whose schema comes from a registry.
    pub registry: Option<Arc<crate::schemas::TableRegistry>>,
}

impl TablePlan {
    /// How the route stage routes this table's records.
    pub fn route_rules(&self) -> crate::route::Rules<'_> {
        crate::route::Rules {
            timestamp: &self.timestamp,
            partition: &self.partition,
            timezone: &self.timezone,
            on_missing_timestamp: self.on_missing_timestamp,
            max_record_bytes: self.max_record_bytes,
            max_future_skew: self.max_future_skew,
        }
    }
}

/// librdkafka properties Lakesink sets itself; a config that sets them would break the
/// commit-after-upload protocol.
const RESERVED_PROPERTIES: &[&str] = &[
    "enable.auto.commit",
    "enable.auto.offset.store",
    "group.id",
    "bootstrap.servers",
];

impl Plan {
    /// Asks the schema registries of registry tables for their subjects' latest schemas: the
    /// tables' columns and the Parquet plan of plain JSON records. Before `run`, `ddl`, `check`.
    pub async fn resolve_schemas(&mut self) -> Result<(), ConfigError> {
        for t in &mut self.tables {
            let Some(reg) = t.registry.clone() else {
                continue;
            };
            let err = |message: String| ConfigError::Table {
                path: self.source.clone(),
                table: t.name.clone(),
                message,
            };
            let schema = Arc::new(reg.resolve_latest().await.map_err(|e| err(e.to_string()))?);
            tracing::info!(table = %t.name, schema = %schema.origin, "schema from the registry");
            if let Some(options) = &t.parquet_options {
                let plan = crate::encode::parquet::plan(options, &schema.arrow, &schema.origin);
                t.parquet = Some(Arc::new(plan.map_err(err)?));
            }
            t.schema = Some(schema);
        }
        Ok(())
    }

    /// Reads and validates a config file.
    pub fn load(path: &FsPath) -> Result<Plan, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Plan::from_toml(&text, &path.display().to_string())
    }

    /// A plan with a placeholder broker and an in-memory store, and these `[[tables]]`.
    #[cfg(test)]
    pub(crate) fn with_tables(tables: &str) -> Plan {
        let text = format!(
            "[kafka]\nbrokers = \"b:9092\"\ngroup_id = \"g\"\n[storage]\nurl = \"memory://\"\n{tables}"
        );
        Plan::from_toml(&text, "test").unwrap()
    }

    /// Parses and validates config text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Plan, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: origin.to_string(),
            message: format_toml_error(&e, text),
        })?;
        Plan::from_file(file, origin)
    }

    fn from_file(file: ConfigFile, origin: &str) -> Result<Plan, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: origin.to_string(),
            message,
        };
        let unit = |key: &str, r: Result<u64, UnitError>| {
            r.map_err(|source| ConfigError::Unit {
                path: origin.to_string(),
                key: key.to_string(),
                source,
            })
        };
        let dur = |key: &str, r: Result<Duration, UnitError>| {
            r.map_err(|source| ConfigError::Unit {
                path: origin.to_string(),
                key: key.to_string(),
                source,
            })
        };

        if file.kafka.brokers.trim().is_empty() {
            return Err(invalid("kafka.brokers is empty".into()));
        }
        if file.kafka.group_id.trim().is_empty() {
            return Err(invalid("kafka.group_id is empty".into()));
        }
        for (key, value) in &file.kafka.properties {
            if RESERVED_PROPERTIES.contains(&key.as_str()) {
                return Err(invalid(format!(
                    "kafka.properties.\"{key}\" is set by Lakesink itself (offsets are committed only after upload); remove it"
                )));
            }
            if key == "isolation.level" && value != "read_committed" {
                return Err(invalid(format!(
                    "kafka.properties.\"isolation.level\" = \"{value}\": Lakesink reads only committed records (records of aborted transactions must never reach the lake); remove it"
                )));
            }
        }

        let url = url::Url::parse(&file.storage.url)
            .map_err(|e| invalid(format!("storage.url `{}`: {e}", file.storage.url)))?;
        match url.scheme() {
            "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" | "file" | "memory" | "http"
            | "https" => {}
            other => {
                return Err(invalid(format!(
                    "storage.url: unsupported scheme `{other}` (use s3, gs, az, file or memory)"
                )))
            }
        }

        let p = &file.pipeline;
        let part_size = unit("pipeline.part_size", parse_bytes(&p.part_size))?;
        if part_size < 5 * 1024 * 1024 {
            return Err(invalid(format!(
                "pipeline.part_size = {:?} is below S3's 5 MiB minimum part size",
                p.part_size
            )));
        }
        let max_buffered_bytes = unit(
            "pipeline.max_buffered_bytes",
            parse_bytes(&p.max_buffered_bytes),
        )?;
        if max_buffered_bytes < 2 * part_size {
            return Err(invalid(format!(
                "pipeline.max_buffered_bytes ({}) must be at least twice pipeline.part_size ({})",
                p.max_buffered_bytes, p.part_size
            )));
        }
        let workers = if p.workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            p.workers
        };
        let pipeline = PipelinePlan {
            max_buffered_bytes,
            part_size: part_size as usize,
            workers,
            drain_timeout: dur("pipeline.drain_timeout", parse_duration(&p.drain_timeout))?,
            commit_interval: dur(
                "pipeline.commit_interval",
                parse_duration(&p.commit_interval),
            )?,
            commit_timeout: dur("pipeline.commit_timeout", parse_duration(&p.commit_timeout))?,
        };

        if file.tables.is_empty() {
            return Err(invalid("no [[tables]]: nothing to write".into()));
        }
        let mut tables = Vec::with_capacity(file.tables.len());
        for t in file.tables {
            tables.push(table_plan(t, origin)?);
        }
        let catalog = catalog_plan(&file.catalog, origin)?;
        let dl = &file.dead_letter;
        let dead_letter_topic = match (dl.kind.as_str(), &dl.topic) {
            ("objects", None) => None,
            ("kafka", Some(t)) if !t.trim().is_empty() => Some(t.trim().to_string()),
            ("kafka", _) => {
                return Err(invalid(
                    "dead_letter.kind = \"kafka\" needs dead_letter.topic".into(),
                ))
            }
            ("objects", Some(_)) => {
                return Err(invalid(
                    "dead_letter.topic applies to dead_letter.kind = \"kafka\"".into(),
                ))
            }
            (other, _) => {
                return Err(invalid(format!(
                    "dead_letter.kind = \"{other}\": use \"objects\" or \"kafka\""
                )))
            }
        };
        if dead_letter_topic
            .as_ref()
            .is_some_and(|t| tables.iter().any(|x| x.topics.contains(t)))
        {
            return Err(invalid(
                "dead_letter.topic is also a table's topic: bad records would come round again"
                    .into(),
            ));
        }
        let dead_letter_prefix = dl.prefix.trim_matches('/').to_string();
        if dead_letter_prefix.is_empty()
            || dead_letter_prefix
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
            || tables.iter().any(|t| t.name == dead_letter_prefix)
        {
            return Err(invalid(format!(
                "dead_letter.prefix = \"{}\" must be a relative path that is not a table's name",
                dl.prefix
            )));
        }
        if !matches!(catalog, CatalogPlan::None) {
            for t in &tables {
                let columns = t.partition.partition_columns();
                let segments = t.partition.source.trim_matches('/').split('/').count();
                if columns.len() != segments {
                    return Err(ConfigError::Table {
                        path: origin.to_string(),
                        table: t.name.clone(),
                        message: format!(
                            "partition_by = \"{}\": with a catalog every path segment must be `column=value` (the catalog needs a column name per level)",
                            t.partition.source
                        ),
                    });
                }
            }
        }
        let mut names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(invalid(format!("two tables are named `{}`", w[0])));
        }

        let retry_timeout = parse_duration(&file.storage.retry_timeout)
            .map_err(|e| invalid(format!("storage.retry_timeout: {e}")))?;
        if retry_timeout > Duration::from_secs(14 * 60) || retry_timeout.is_zero() {
            return Err(invalid(format!(
                "storage.retry_timeout = \"{}\": between 1s and 14m (a retried request keeps its signature, which S3 refuses after 15 minutes)",
                file.storage.retry_timeout
            )));
        }

        Ok(Plan {
            source: origin.to_string(),
            kafka: KafkaPlan {
                brokers: file.kafka.brokers,
                group_id: file.kafka.group_id,
                properties: file.kafka.properties,
            },
            storage: StoragePlan {
                url,
                retry_timeout,
                options: file.storage.options,
                unfenced: file.storage.unfenced,
            },
            pipeline,
            catalog,
            dead_letter_prefix,
            dead_letter_topic,
            tables,
        })
    }

    /// Every topic of every table, each once, sorted.
    pub fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.tables.iter().flat_map(|t| t.topics.clone()).collect();
        topics.sort();
        topics.dedup();
        topics
    }
}

fn table_plan(t: TableSection, origin: &str) -> Result<TablePlan, ConfigError> {
    let name = t.name.clone();
    let err = |message: String| ConfigError::Table {
        path: origin.to_string(),
        table: name.clone(),
        message,
    };
    let unit_err = |key: &str, source: UnitError| ConfigError::Unit {
        path: origin.to_string(),
        key: format!("tables.{}.{key}", name),
        source,
    };

    if t.name.is_empty()
        || !t
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(err(
            "name must be non-empty and use only ASCII letters, digits, `_` and `-` (it is a path segment and a catalog table name)".into(),
        ));
    }
    if t.topics.is_empty() {
        return Err(err("topics is empty".into()));
    }
    let format = match t.format.as_str() {
        "json.gz" | "jsongz" | "ndjson.gz" => Format::JsonGz,
        "parquet" => Format::Parquet,
        other => {
            return Err(err(format!(
                "unknown format `{other}` (use json.gz or parquet)"
            )))
        }
    };
    let (schema, registry) = match &t.schema {
        None => (None, None),
        Some(s) => match (&s.file, &s.registry) {
            (Some(file), None) => {
                if s.subject.is_some() || s.username.is_some() || s.ca_file.is_some() {
                    return Err(err(
                        "schema: subject, username, password and ca_file go with registry, not file"
                            .into(),
                    ));
                }
                let r = lakesink_schema_registry::source::resolve_file(file, &schema_dirs(origin))
                    .map_err(|e| err(e.to_string()))?;
                let schema = TableSchema {
                    arrow: Arc::new(r.schema),
                    origin: r.origin,
                };
                (Some(Arc::new(schema)), None)
            }
            (None, Some(url)) => {
                url::Url::parse(url).map_err(|e| err(format!("schema.registry `{url}`: {e}")))?;
                let subject = s.subject.clone().ok_or_else(|| {
                    err("schema.registry needs schema.subject (e.g. \"cloudtrail-value\")".into())
                })?;
                let cfg = lakesink_schema_registry::registry::RegistryConfig {
                    url: url.clone(),
                    username: s.username.clone(),
                    password: s.password.clone(),
                    ca_file: s.ca_file.as_ref().map(PathBuf::from),
                    timeout: Duration::from_secs(30),
                };
                let r = crate::schemas::TableRegistry::new(cfg, subject)
                    .map_err(|e| err(e.to_string()))?;
                (None, Some(Arc::new(r)))
            }
            _ => {
                return Err(err(
                    "schema needs one of `file = \"cloudtrail.avsc\"` or `registry = \"http://…\"`"
                        .into(),
                ))
            }
        },
    };
    let parquet_options = match format {
        Format::Parquet => {
            if schema.is_none() && registry.is_none() {
                return Err(err(
                    "format = \"parquet\" needs a schema: schema = { file = \"cloudtrail.avsc\" } or { registry = \"http://…\", subject = \"…\" }"
                        .into(),
                ));
            }
            Some(Arc::new(
                t.parquet.unwrap_or_default().validate().map_err(err)?,
            ))
        }
        Format::JsonGz => {
            if t.parquet.is_some() {
                return Err(err(
                    "[tables.parquet] is for format = \"parquet\" tables".into()
                ));
            }
            None
        }
    };
    let parquet = match (&parquet_options, &schema) {
        (Some(options), Some(schema)) => Some(Arc::new(
            crate::encode::parquet::plan(options, &schema.arrow, &schema.origin).map_err(err)?,
        )),
        _ => None,
    };
    let partition =
        PartitionTemplate::parse(&t.partition_by).map_err(|source| ConfigError::Template {
            path: origin.to_string(),
            table: name.clone(),
            source,
        })?;
    let timestamp = match t.timestamp {
        None => TimestampSource::Kafka,
        Some(TimestampSection::Named(s)) if s == "kafka" => TimestampSource::Kafka,
        Some(TimestampSection::Named(s)) => {
            return Err(err(format!(
                "timestamp = \"{s}\": use \"kafka\" or {{ field = \"eventTime\" }}"
            )))
        }
        Some(TimestampSection::Field { field, unit }) => {
            let unit = match unit.as_deref() {
                None | Some("auto") => TimestampUnit::Auto,
                Some("rfc3339") | Some("iso8601") => TimestampUnit::Rfc3339,
                Some("s") => TimestampUnit::Seconds,
                Some("ms") => TimestampUnit::Millis,
                Some("us") => TimestampUnit::Micros,
                Some(other) => {
                    return Err(err(format!(
                        "timestamp.unit = \"{other}\": use auto, rfc3339, s, ms or us"
                    )))
                }
            };
            if field.is_empty() || field.split('.').any(str::is_empty) {
                return Err(err(format!(
                    "timestamp.field = \"{field}\" is not a field path"
                )));
            }
            TimestampSource::Field {
                path: field.split('.').map(str::to_string).collect(),
                unit,
            }
        }
    };
    let timezone = TimeZoneSpec::parse(&t.timezone).map_err(err)?;
    let on_missing_timestamp = match t.on_missing_timestamp.as_str() {
        "kafka" => MissingTimestamp::Kafka,
        "fail" => MissingTimestamp::Fail,
        "dlq" => MissingTimestamp::DeadLetter,
        other => {
            return Err(err(format!(
                "on_missing_timestamp = \"{other}\": use \"kafka\", \"fail\" or \"dlq\""
            )))
        }
    };
    let on_bad_record = match t.on_bad_record.as_str() {
        "fail" => BadRecord::Fail,
        "dlq" => BadRecord::DeadLetter,
        other => {
            return Err(err(format!(
                "on_bad_record = \"{other}\": use \"fail\" or \"dlq\""
            )))
        }
    };
    let max_record_bytes =
        parse_bytes(&t.max_record_bytes).map_err(|e| unit_err("max_record_bytes", e))?;
    if t.compression_level > 9 {
        return Err(err(format!(
            "compression_level = {} (gzip levels are 0–9)",
            t.compression_level
        )));
    }
    let max_future_skew =
        parse_duration(&t.max_future_skew).map_err(|e| unit_err("max_future_skew", e))?;
    if t.rotate.max_records == 0 {
        return Err(err("rotate.max_records must be at least 1".into()));
    }
    let rotate = RotateLimits {
        max_records: t.rotate.max_records,
        max_bytes: parse_bytes(&t.rotate.max_bytes).map_err(|e| unit_err("rotate.max_bytes", e))?,
        max_age: parse_duration(&t.rotate.max_age).map_err(|e| unit_err("rotate.max_age", e))?,
    };
    if rotate.max_bytes == 0 || rotate.max_age.is_zero() {
        return Err(err(
            "rotate.max_bytes and rotate.max_age must be positive".into()
        ));
    }

    Ok(TablePlan {
        name: t.name,
        topics: t.topics,
        format,
        partition,
        timestamp,
        timezone,
        on_missing_timestamp,
        max_future_skew,
        compression_level: t.compression_level,
        rotate,
        on_bad_record,
        max_record_bytes,
        catalog_table: t.catalog_table,
        catalog_database: t.catalog_database,
        schema,
        parquet,
        parquet_options,
        registry,
    })
}

/// The Parquet plan of a schema file (resolved as `schema = { file = … }` is) with the default
/// `[tables.parquet]` settings: the demo table's, for the benchmark's ceiling and probes.
pub fn default_parquet_plan(file: &str) -> Result<ParquetPlan, String> {
    let r = lakesink_schema_registry::source::resolve_file(file, &schema_dirs("."))
        .map_err(|e| e.to_string())?;
    let options = ParquetSection::default().validate()?;
    crate::encode::parquet::plan(&options, &Arc::new(r.schema), &r.origin)
}

/// Where `schema = { file = … }` is looked up: beside the config file, in
/// `schema-registry/schemas/` beside it and below the working directory.
fn schema_dirs(origin: &str) -> Vec<PathBuf> {
    let dir = FsPath::new(origin)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), FsPath::to_path_buf);
    vec![
        dir.clone(),
        dir.join("schema-registry/schemas"),
        PathBuf::from("schema-registry/schemas"),
    ]
}

fn catalog_plan(c: &CatalogSection, origin: &str) -> Result<CatalogPlan, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        path: origin.to_string(),
        message,
    };
    let kind = c.kind.as_deref().unwrap_or("none");
    let timeout = parse_duration(&c.timeout).map_err(|source| ConfigError::Unit {
        path: origin.to_string(),
        key: "catalog.timeout".into(),
        source,
    })?;
    // Keys that belong to another kind are a mistake worth naming.
    let foreign: &[(&str, bool)] = &[
        ("database", c.database.is_some()),
        ("create_table", c.create_table),
        ("region", c.region.is_some()),
        ("endpoint", c.endpoint.is_some()),
        ("access_key_id", c.access_key_id.is_some()),
        ("secret_access_key", c.secret_access_key.is_some()),
        ("session_token", c.session_token.is_some()),
        ("uri", c.uri.is_some()),
        ("url", c.url.is_some()),
        ("secret", c.secret.is_some()),
    ];
    let allowed: &[&str] = match kind {
        "none" => &[],
        "glue" => &[
            "database",
            "create_table",
            "region",
            "endpoint",
            "access_key_id",
            "secret_access_key",
            "session_token",
        ],
        "hive" => &["database", "create_table", "uri"],
        "webhook" => &["url", "secret"],
        other => {
            return Err(invalid(format!(
                "catalog.kind = \"{other}\": use glue, hive, webhook or none"
            )))
        }
    };
    if let Some((key, _)) = foreign.iter().find(|(k, set)| *set && !allowed.contains(k)) {
        return Err(invalid(format!(
            "catalog.{key} does not apply to catalog.kind = \"{kind}\""
        )));
    }
    let database = || {
        c.database
            .clone()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| invalid(format!("catalog.kind = \"{kind}\" needs catalog.database")))
    };
    let parse_url = |key: &str, v: &str| {
        url::Url::parse(v).map_err(|e| invalid(format!("catalog.{key} = \"{v}\": {e}")))
    };
    Ok(match kind {
        "none" => CatalogPlan::None,
        "glue" => {
            let credentials = match (&c.access_key_id, &c.secret_access_key) {
                (Some(id), Some(secret)) => {
                    Some((id.clone(), secret.clone(), c.session_token.clone()))
                }
                (None, None) => None,
                _ => {
                    return Err(invalid(
                        "catalog.access_key_id and catalog.secret_access_key go together".into(),
                    ))
                }
            };
            CatalogPlan::Glue(GluePlan {
                database: database()?,
                region: c
                    .region
                    .clone()
                    .or_else(|| std::env::var("AWS_REGION").ok())
                    .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
                    .unwrap_or_else(|| "us-east-1".into()),
                endpoint: c
                    .endpoint
                    .as_deref()
                    .map(|e| parse_url("endpoint", e))
                    .transpose()?,
                create_table: c.create_table,
                credentials,
                timeout,
            })
        }
        "hive" => {
            let uri = c.uri.as_deref().ok_or_else(|| {
                invalid("catalog.kind = \"hive\" needs catalog.uri = \"thrift://host:9083\"".into())
            })?;
            let u = parse_url("uri", uri)?;
            if u.scheme() != "thrift" || u.host_str().is_none() {
                return Err(invalid(format!(
                    "catalog.uri = \"{uri}\": use thrift://host:port"
                )));
            }
            CatalogPlan::Hive(HivePlan {
                address: format!(
                    "{}:{}",
                    u.host_str().unwrap_or_default(),
                    u.port().unwrap_or(9083)
                ),
                database: database()?,
                create_table: c.create_table,
                timeout,
            })
        }
        _ => {
            let url = c
                .url
                .as_deref()
                .ok_or_else(|| invalid("catalog.kind = \"webhook\" needs catalog.url".into()))?;
            let url = parse_url("url", url)?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(invalid(format!(
                    "catalog.url = \"{url}\": use http:// or https://"
                )));
            }
            CatalogPlan::Webhook(WebhookPlan {
                url,
                secret: c.secret.clone(),
                timeout,
            })
        }
    })
}

/// toml's messages already name the key; add the line and column up front.
fn format_toml_error(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim().to_string();
    match e.span().map(|s| s.start) {
        Some(start) => {
            let before = &text[..start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before
                .rfind('\n')
                .map_or(before.len(), |i| before.len() - i - 1)
                + 1;
            format!("line {line}, column {col}: {message}")
        }
        None => message,
    }
}

/// Option keys whose values are secrets and never printed.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "secret",
        "password",
        "token",
        "sas",
        "credential",
        "private",
        "key",
    ]
    .iter()
    .any(|s| k.contains(s))
        && !k.ends_with("key_id")
        && !k.ends_with("location")
        && !k.ends_with(".id")
}

/// Renders a map for humans with secret values replaced by `***`.
pub fn redacted(map: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    map.iter()
        .map(|(k, v)| {
            let v = if is_secret_key(k) {
                "***".to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

impl fmt::Debug for KafkaPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaPlan")
            .field("brokers", &self.brokers)
            .field("group_id", &self.group_id)
            .field("properties", &redacted(&self.properties))
            .finish()
    }
}

impl fmt::Debug for StoragePlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut url = self.url.clone();
        if url.password().is_some() {
            let _ = url.set_password(Some("***"));
        }
        f.debug_struct("StoragePlan")
            .field("url", &url.as_str())
            .field("options", &redacted(&self.options))
            .field("retry_timeout", &self.retry_timeout)
            .field("unfenced", &self.unfenced)
            .finish()
    }
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plan")
            .field("kafka", &self.kafka)
            .field("storage", &self.storage)
            .field("pipeline", &self.pipeline)
            .field("catalog", &self.catalog)
            .field("tables", &self.tables)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[kafka]
brokers = "127.0.0.1:9092"
group_id = "g"
[kafka.properties]
"sasl.password" = "hunter2"
[storage]
url = "s3://bucket/prefix"
[storage.options]
endpoint = "http://127.0.0.1:8333"
aws_secret_access_key = "topsecret"
[[tables]]
name = "cloudtrail"
topics = ["cloudtrail"]
partition_by = "date={event_time:%Y-%m-%d}/hour={event_time:%H}/region={field:awsRegion}"
timestamp = { field = "eventTime" }
[tables.rotate]
max_records = 1000
max_bytes = "64MiB"
max_age = "30s"
"#;

    #[test]
    fn parses_the_documented_shape() {
        let plan = Plan::from_toml(MINIMAL, "t.toml").unwrap();
        let t = &plan.tables[0];
        assert_eq!(t.rotate.max_records, 1000);
        assert_eq!(t.rotate.max_bytes, 64 * 1024 * 1024);
        assert_eq!(t.rotate.max_age, Duration::from_secs(30));
        assert_eq!(t.format, Format::JsonGz);
        assert_eq!(plan.topics(), vec!["cloudtrail".to_string()]);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = MINIMAL.replace("max_age = \"30s\"", "max_age = \"30s\"\nmax_agee = 3");
        let e = Plan::from_toml(&text, "t.toml").unwrap_err().to_string();
        assert!(e.contains("max_agee"), "{e}");
        assert!(e.contains("line 21, column 1"), "{e}");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let plan = Plan::from_toml(MINIMAL, "t.toml").unwrap();
        let shown = format!("{plan:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("topsecret"), "{shown}");
        assert!(shown.contains("http://127.0.0.1:8333"));
    }

    fn with_catalog(catalog: &str) -> String {
        MINIMAL.replace("[[tables]]", &format!("{catalog}\n[[tables]]"))
    }

    #[test]
    fn each_catalog_kind_parses() {
        let glue = Plan::from_toml(
            &with_catalog("[catalog]\nkind = \"glue\"\ndatabase = \"logs\"\nregion = \"eu-west-1\"\nendpoint = \"http://127.0.0.1:5000\"\ncreate_table = true\naccess_key_id = \"AKID\"\nsecret_access_key = \"glue-secret\""),
            "t.toml",
        )
        .unwrap();
        match &glue.catalog {
            CatalogPlan::Glue(g) => {
                assert_eq!(g.database, "logs");
                assert_eq!(g.region, "eu-west-1");
                assert!(g.create_table);
                assert_eq!(
                    g.endpoint.as_ref().unwrap().as_str(),
                    "http://127.0.0.1:5000/"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{glue:?}").contains("glue-secret"));

        let hive = Plan::from_toml(
            &with_catalog(
                "[catalog]\nkind = \"hive\"\ndatabase = \"logs\"\nuri = \"thrift://meta:9083\"",
            ),
            "t.toml",
        )
        .unwrap();
        assert!(matches!(&hive.catalog, CatalogPlan::Hive(h) if h.address == "meta:9083"));

        let hook = Plan::from_toml(
            &with_catalog("[catalog]\nkind = \"webhook\"\nurl = \"https://hooks.example/p\"\nsecret = \"s3cr3t\""),
            "t.toml",
        )
        .unwrap();
        assert!(matches!(&hook.catalog, CatalogPlan::Webhook(_)));
        assert!(!format!("{hook:?}").contains("s3cr3t"));
        assert!(matches!(
            Plan::from_toml(MINIMAL, "t.toml").unwrap().catalog,
            CatalogPlan::None
        ));
    }

    #[test]
    fn catalog_mistakes_are_named() {
        let cases = [
            ("[catalog]\nkind = \"glue\"", "needs catalog.database"),
            (
                "[catalog]\nkind = \"webhook\"\nurl = \"http://x/\"\ndatabase = \"d\"",
                "catalog.database does not apply",
            ),
            (
                "[catalog]\nkind = \"hive\"\ndatabase = \"d\"\nuri = \"http://x:1\"",
                "thrift://",
            ),
            (
                "[catalog]\nkind = \"nessie\"",
                "use glue, hive, webhook or none",
            ),
            (
                "[catalog]\nkind = \"glue\"\ndatabase = \"d\"\naccess_key_id = \"a\"",
                "go together",
            ),
        ];
        for (catalog, want) in cases {
            let e = Plan::from_toml(&with_catalog(catalog), "t.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{catalog}: {e}");
        }
        // A catalog needs `column=value` at every level of the path.
        let text = with_catalog("[catalog]\nkind = \"webhook\"\nurl = \"http://x/\"")
            .replace("/region={field:awsRegion}", "/{field:awsRegion}");
        let e = Plan::from_toml(&text, "t.toml").unwrap_err().to_string();
        assert!(e.contains("column=value"), "{e}");
    }

    #[test]
    fn reading_uncommitted_records_is_refused() {
        let with = |v: &str| {
            MINIMAL.replace(
                "[kafka.properties]",
                &format!("[kafka.properties]\n\"isolation.level\" = \"{v}\""),
            )
        };
        let e = Plan::from_toml(&with("read_uncommitted"), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("isolation.level") && e.contains("aborted"),
            "{e}"
        );
        Plan::from_toml(&with("read_committed"), "t.toml").unwrap();
    }

    #[test]
    fn auto_commit_is_refused() {
        let text = MINIMAL.replace(
            "[kafka.properties]",
            "[kafka.properties]\n\"enable.auto.commit\" = \"true\"",
        );
        let e = Plan::from_toml(&text, "t.toml").unwrap_err().to_string();
        assert!(e.contains("enable.auto.commit"), "{e}");
    }

    #[test]
    fn dead_letter_destinations_parse() {
        let text = MINIMAL.replace(
            "[tables.rotate]",
            "on_missing_timestamp = \"dlq\"\non_bad_record = \"dlq\"\nmax_record_bytes = \"1MiB\"\n[tables.rotate]",
        );
        let plan = Plan::from_toml(&text, "t.toml").unwrap();
        let t = &plan.tables[0];
        assert_eq!(t.on_missing_timestamp, MissingTimestamp::DeadLetter);
        assert_eq!(t.on_bad_record, BadRecord::DeadLetter);
        assert_eq!(t.max_record_bytes, 1 << 20);
        assert_eq!(plan.dead_letter_prefix, "_errors");
        let kafka = text.replace("[[tables]]", "[dead_letter]\nkind = \"kafka\"\n[[tables]]");
        let e = Plan::from_toml(&kafka, "t.toml").unwrap_err().to_string();
        assert!(e.contains("needs dead_letter.topic"), "{e}");
        let kafka = text.replace(
            "[[tables]]",
            "[dead_letter]\nkind = \"kafka\"\ntopic = \"dlq\"\n[[tables]]",
        );
        let plan = Plan::from_toml(&kafka, "t.toml").unwrap();
        assert_eq!(plan.dead_letter_topic.as_deref(), Some("dlq"));
        let looping = text.replace(
            "[[tables]]",
            "[dead_letter]\nkind = \"kafka\"\ntopic = \"cloudtrail\"\n[[tables]]",
        );
        assert!(Plan::from_toml(&looping, "t.toml").is_err());
        let escape = text.replace("[[tables]]", "[dead_letter]\nprefix = \"../x\"\n[[tables]]");
        assert!(Plan::from_toml(&escape, "t.toml").is_err());
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let text = include_str!("../../kafka-config/lakesink.example.toml");
        let plan = Plan::from_toml(text, "kafka-config/lakesink.example.toml").unwrap();
        assert_eq!(plan.tables.len(), 3);
        let pq = &plan.tables[1];
        assert_eq!(pq.format, Format::Parquet);
        assert_eq!(pq.registry.as_ref().unwrap().subject, "cloudtrail-value");
        assert_eq!(
            pq.parquet_options.as_ref().unwrap().bloom_filters,
            vec!["eventID", "userIdentity.arn"]
        );
        assert_eq!(
            plan.tables[2].partition.partition_columns(),
            vec!["date", "hour", "resolver"]
        );
    }

    #[test]
    fn bad_units_name_the_key() {
        let text = MINIMAL.replace("\"64MiB\"", "\"64 lots\"");
        let e = Plan::from_toml(&text, "t.toml").unwrap_err().to_string();
        assert!(e.contains("rotate.max_bytes"), "{e}");
    }

    #[test]
    fn store_retries_last_ten_minutes_and_at_most_fourteen() {
        let plan = Plan::from_toml(MINIMAL, "t.toml").unwrap();
        assert_eq!(plan.storage.retry_timeout, Duration::from_secs(600));
        let text = MINIMAL.replace(
            "url = \"s3://bucket/prefix\"",
            "url = \"s3://bucket/prefix\"\nretry_timeout = \"20m\"",
        );
        let e = Plan::from_toml(&text, "t.toml").unwrap_err().to_string();
        assert!(
            e.contains("storage.retry_timeout") && e.contains("14m"),
            "{e}"
        );
    }
}
