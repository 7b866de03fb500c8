//! The configuration file as written: serde structs that mirror the TOML one to one, with sizes,
//! durations and choices typed where the file is read (so a bad value is an error naming its
//! line and key) and each section's defaults in one `Default` impl.

use std::collections::BTreeMap;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::{BadRecord, Format, LateAfterSeal, Unfenced};
use crate::route::timestamp::TimestampUnit;
use crate::route::MissingTimestamp;
use crate::units::{ByteSize, Span};

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
    pub http: HttpSection,
    #[serde(default)]
    pub log: LogSection,
    #[serde(default)]
    pub tables: Vec<TableSection>,
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
    /// `[kafka.aws_msk_iam]`: sign in to Amazon MSK with IAM (SASL/OAUTHBEARER over TLS, a
    /// SigV4-signed token from the AWS credential chain).
    pub aws_msk_iam: Option<MskIamSection>,
}

/// `[kafka.aws_msk_iam]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MskIamSection {
    /// The cluster's region; by default the one in the brokers' host names
    /// (`….kafka.us-east-1.amazonaws.com`), else `AWS_REGION` / `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
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
    #[serde(default = "StorageSection::default_retry_timeout")]
    pub retry_timeout: Span,
    /// What to do when the store does not refuse a second create-only write, so segment
    /// claims cannot fence a writer that lost its partition (the daemon probes at start).
    #[serde(default)]
    pub unfenced: Unfenced,
}

impl StorageSection {
    fn default_retry_timeout() -> Span {
        Span::secs(600)
    }
}

/// `[pipeline]`: daemon-wide limits. Every key has a default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSection {
    /// Upper bound for the bytes held by open files and uploads in flight, all tables together;
    /// `"auto"`: a share of the container's memory limit (see [`MaxBuffered`]).
    pub max_buffered_bytes: MaxBuffered,
    /// Size of one multipart-upload part (≥ 5 MiB, S3's minimum).
    pub part_size: ByteSize,
    /// Encoding threads; 0 means one per core.
    pub workers: usize,
    /// How long SIGTERM may spend uploading and committing before the daemon gives up.
    pub drain_timeout: Span,
    /// How often finished segments are committed to Kafka.
    pub commit_interval: Span,
    /// How long commits may keep failing with errors worth retrying (coordinator moving,
    /// timeouts) before the daemon stops. Permanent errors (authorization) stop it at once.
    pub commit_timeout: Span,
}

impl Default for PipelineSection {
    fn default() -> Self {
        Self {
            max_buffered_bytes: MaxBuffered::Fixed(ByteSize::mib(1024)),
            part_size: ByteSize::mib(8),
            workers: 0,
            drain_timeout: Span::secs(120),
            commit_interval: Span::secs(1),
            commit_timeout: Span::secs(300),
        }
    }
}

/// `pipeline.max_buffered_bytes`: a size, or `"auto"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxBuffered {
    Fixed(ByteSize),
    /// [`MaxBuffered::AUTO_SHARE`] of the cgroup's memory limit when one is set, 1 GiB
    /// otherwise.
    Auto,
}

impl MaxBuffered {
    /// The share of a container's memory limit `"auto"` takes: the rest is the daemon's
    /// overhead beyond its budget (librdkafka's queues, encoders' state, allocator slack), which
    /// the memory tests measure at well under half.
    pub const AUTO_SHARE: f64 = 0.5;

    /// The budget in bytes, given the cgroup's memory limit (if any).
    pub fn resolve(self, cgroup_limit: Option<u64>) -> u64 {
        match (self, cgroup_limit) {
            (MaxBuffered::Fixed(b), _) => b.0,
            (MaxBuffered::Auto, Some(limit)) => (limit as f64 * Self::AUTO_SHARE) as u64,
            (MaxBuffered::Auto, None) => 1 << 30,
        }
    }
}

impl<'de> Deserialize<'de> for MaxBuffered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Bytes(u64),
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) if t.trim() == "auto" => Ok(MaxBuffered::Auto),
            Raw::Text(t) => crate::units::parse_bytes(&t)
                .map(|b| MaxBuffered::Fixed(ByteSize(b)))
                .map_err(de::Error::custom),
            Raw::Bytes(b) => Ok(MaxBuffered::Fixed(ByteSize(b))),
        }
    }
}

/// The memory limit of this process's cgroup (v2 `memory.max`, or v1), if one is set.
pub fn cgroup_memory_limit() -> Option<u64> {
    [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .and_then(|s| s.trim().parse::<u64>().ok())
    // v1 says "no limit" with a huge number.
    .filter(|&n| n < 1 << 60)
}

/// `[catalog]`: where new partitions are registered, one catalog per daemon.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogSection {
    pub kind: CatalogKind,
    /// Glue and Hive: the database the tables live in (tables may override it).
    pub database: Option<String>,
    /// Glue and Hive: create the database and tables when they do not exist.
    pub create_table: bool,
    /// Glue: the AWS region (default: `AWS_REGION`, then `us-east-1`).
    pub region: Option<String>,
    /// Glue: endpoint override (moto, LocalStack, Glue-compatible services).
    pub endpoint: Option<String>,
    /// Glue: static credentials; by default the standard AWS chain (environment, web
    /// identity, container and instance metadata).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Hive: `thrift://host:9083`.
    pub uri: Option<String>,
    /// Webhook: where each new partition is POSTed.
    pub url: Option<String>,
    /// Webhook: HMAC-SHA256 key for the `X-Lakesink-Signature` header.
    pub secret: Option<String>,
    /// Timeout of one catalog call.
    pub timeout: Span,
}

impl Default for CatalogSection {
    fn default() -> Self {
        Self {
            kind: CatalogKind::None,
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
            timeout: Span::secs(10),
        }
    }
}

/// `catalog.kind`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatalogKind {
    #[default]
    None,
    Glue,
    Hive,
    Webhook,
}

impl CatalogKind {
    pub fn name(self) -> &'static str {
        match self {
            CatalogKind::None => "none",
            CatalogKind::Glue => "glue",
            CatalogKind::Hive => "hive",
            CatalogKind::Webhook => "webhook",
        }
    }
}

/// `[dead_letter]`: where bad records go for tables with `on_bad_record = "dlq"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLetterSection {
    pub kind: DeadLetterKind,
    /// Objects: the path below `storage.url`.
    pub prefix: String,
    /// Kafka: the topic.
    pub topic: Option<String>,
}

impl Default for DeadLetterSection {
    fn default() -> Self {
        Self {
            kind: DeadLetterKind::Objects,
            prefix: "_errors".into(),
            topic: None,
        }
    }
}

/// `dead_letter.kind`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterKind {
    /// gzip NDJSON envelopes under `{storage.url}/{prefix}/{table}/`.
    #[default]
    Objects,
    /// The original record (key, value, headers) to `topic`, with `lakesink.*` headers that
    /// say why, on the brokers of `[kafka]`.
    Kafka,
}

/// `[http]`: the listener for `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// `host:port`; `""` turns the listener off.
    pub address: String,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            address: "0.0.0.0:9464".into(),
        }
    }
}

/// `[log]`: how the daemon logs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `text` or `json` (one object per line); `LAKESINK_LOG_FORMAT` overrides it.
    pub format: LogFormat,
    /// How often the steady `info` line reports throughput, lag and budget; `0s` turns it off.
    pub interval: Span,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            interval: Span::secs(60),
        }
    }
}

/// `log.format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// `[[tables]]`: one table of the lake.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TableSection {
    /// Objects go under `{storage.url}/{name}/`.
    pub name: String,
    /// Topics whose records land in this table.
    pub topics: Vec<String>,
    pub format: Format,
    /// The table's schema: `{ file = "cloudtrail.avsc" }`. Required for `parquet`; for
    /// `json.gz` it only gives `lakesink ddl` and `catalog.create_table` their columns.
    pub schema: Option<SchemaSection>,
    /// Parquet writer settings (`format = "parquet"` only).
    pub parquet: Option<ParquetSection>,
    /// Hive-style partition template: literal text, `{event_time:STRFTIME}`, `{topic}`,
    /// `{partition}` and `{field:a.b}`.
    pub partition_by: String,
    /// Where the event time comes from: `{ field = "eventTime" }` (with optional
    /// `unit = "auto" | "rfc3339" | "s" | "ms" | "us"`) or `"kafka"` (the default).
    pub timestamp: TimestampSection,
    /// `UTC`, an IANA zone (`Europe/Berlin`) or a fixed offset (`+02:00`).
    pub timezone: String,
    /// What a record without a usable event time does: `kafka` (use the Kafka timestamp),
    /// `fail` (stop with an error), `dlq` (to the dead-letter destination).
    pub on_missing_timestamp: MissingTimestamp,
    /// Event times further than this ahead of the record's Kafka timestamp are not trusted.
    pub max_future_skew: Span,
    /// How far behind the newest committed event time of its slowest Kafka partition the
    /// table still expects records: its completeness watermark is that time minus this.
    pub allowed_lateness: Span,
    /// Seal each partition once its time span ends below the watermark: a manifest of its
    /// objects, `_SUCCESS`, and the catalog told (see `docs/DESIGN.md`, "Sealing").
    pub seal: bool,
    /// With `seal`: what a record for a partition already below the watermark when its
    /// segment began does: `append` (written, the partition re-sealed) or `dlq`.
    pub late_after_seal: LateAfterSeal,
    /// What an unusable record (not a JSON object, not UTF-8, empty, too large) does: `fail`
    /// (stop with an error) or `dlq` (to the dead-letter destination).
    pub on_bad_record: BadRecord,
    /// Records larger than this are bad records.
    pub max_record_bytes: ByteSize,
    /// gzip level 0–9 for `json.gz`.
    pub compression_level: u32,
    pub rotate: RotateSection,
    /// `[tables.compact]`: sealed partitions rewritten into few large files.
    pub compact: Option<CompactSection>,
    /// The table's name in the catalog (default: `name`).
    pub catalog_table: Option<String>,
    /// The table's database in the catalog (default: `catalog.database`).
    pub catalog_database: Option<String>,
}

impl Default for TableSection {
    fn default() -> Self {
        Self {
            name: String::new(),
            topics: Vec::new(),
            format: Format::JsonGz,
            schema: None,
            parquet: None,
            partition_by: "date={event_time:%Y-%m-%d}/hour={event_time:%H}".into(),
            timestamp: TimestampSection::Kafka,
            timezone: "UTC".into(),
            on_missing_timestamp: MissingTimestamp::Fail,
            max_future_skew: Span::secs(3600),
            allowed_lateness: Span::secs(3600),
            seal: false,
            late_after_seal: LateAfterSeal::Append,
            on_bad_record: BadRecord::Fail,
            max_record_bytes: ByteSize::mib(10),
            compression_level: 6,
            rotate: RotateSection::default(),
            compact: None,
            catalog_table: None,
            catalog_database: None,
        }
    }
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
#[serde(deny_unknown_fields, default)]
pub struct ParquetSection {
    pub compression: ParquetCompression,
    /// Level for zstd (1–22, default 3) and gzip (0–9, default 6).
    pub compression_level: Option<i32>,
    /// A row group holds at most this many rows…
    pub row_group_rows: usize,
    /// …and at most this much Arrow data (the settled rows a file holds until the row group is
    /// written).
    pub row_group_bytes: ByteSize,
    /// Min/max statistics: `page` (default: column index and chunk), `chunk` or `none`.
    pub statistics: ParquetStatistics,
    /// Dictionary encoding (falls back to plain per page when a dictionary grows large).
    pub dictionary: bool,
    /// Columns (dotted paths into structs: `userIdentity.arn`) that get a bloom filter.
    pub bloom_filters: Vec<String>,
    /// False-positive rate of the bloom filters.
    pub bloom_filter_fpp: f64,
    /// A JSON field the schema lacks: `drop` (default) or `fail` (a bad record).
    pub unknown_fields: UnknownFields,
    /// Parse each JSON record once, into Arrow, as it is routed (default); `false`: the route
    /// pass, then arrow-json at the settle, as before December 2026 (`docs/DESIGN.md`).
    pub one_pass: bool,
}

impl Default for ParquetSection {
    fn default() -> Self {
        Self {
            compression: ParquetCompression::Zstd,
            compression_level: None,
            row_group_rows: 128 * 1024,
            row_group_bytes: ByteSize::mib(64),
            statistics: ParquetStatistics::Page,
            dictionary: true,
            bloom_filters: Vec::new(),
            bloom_filter_fpp: 0.01,
            unknown_fields: UnknownFields::Drop,
            one_pass: true,
        }
    }
}

/// `parquet.compression`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParquetCompression {
    Zstd,
    Snappy,
    Gzip,
    Lz4,
    #[serde(alias = "uncompressed")]
    None,
}

/// `parquet.statistics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParquetStatistics {
    Page,
    Chunk,
    None,
}

/// `parquet.unknown_fields`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownFields {
    Drop,
    Fail,
}

/// `timestamp = …` in a table: `"kafka"` or `{ field = "eventTime", unit = "auto" }`.
#[derive(Debug, PartialEq, Eq)]
pub enum TimestampSection {
    Kafka,
    Field { field: String, unit: TimestampUnit },
}

impl<'de> Deserialize<'de> for TimestampSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Field {
            field: String,
            #[serde(default)]
            unit: TimestampUnit,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TimestampSection;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"kafka\" or { field = \"eventTime\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "kafka" => Ok(TimestampSection::Kafka),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let f = Field::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(TimestampSection::Field {
                    field: f.field,
                    unit: f.unit,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `[tables.compact]`: how sealed partitions are compacted (see `docs/DESIGN.md`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompactSection {
    /// Compacted files are cut at about this size.
    pub target_size: ByteSize,
    /// A sealed partition is compacted once it has at least this many files.
    pub min_files: usize,
    /// How long the replaced files stay after the catalog points at the compacted ones (for
    /// queries that started before).
    pub grace: Span,
    /// The daemon compacts by itself (otherwise only `lakesink compact` does, from a cron job).
    pub auto: bool,
}

impl Default for CompactSection {
    fn default() -> Self {
        Self {
            target_size: ByteSize::mib(256),
            min_files: 4,
            grace: Span::secs(3600),
            auto: false,
        }
    }
}

/// `[tables.rotate]`: when an open file is closed and uploaded.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RotateSection {
    pub max_records: u64,
    pub max_bytes: ByteSize,
    pub max_age: Span,
}

impl Default for RotateSection {
    fn default() -> Self {
        Self {
            max_records: 500_000,
            max_bytes: ByteSize::mib(128),
            max_age: Span::secs(300),
        }
    }
}
