//! The configuration file, in three steps: the text (`${VAR}` and secret `…_file` keys
//! substituted, `text`), the file as written (serde structs with typed sizes, durations and
//! choices, parsed strictly with `deny_unknown_fields` so a typo is an error naming the key and
//! its line, `file`), and the validated [`Plan`] that the pipeline runs from (tables in
//! `table`, the catalog in `catalog`). Nothing after [`Plan::from_toml`] parses a string
//! from the config again.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

pub use crate::encode::parquet::ParquetOptions;
use crate::encode::ParquetPlan;
use crate::route::template::{PartitionTemplate, TemplateError};
use crate::route::timestamp::{TimeZoneSpec, TimestampSource};
pub use crate::route::MissingTimestamp;
pub use crate::schemas::TableSchema;
use crate::units::{ByteSize, UnitError};

mod catalog;
mod file;
mod table;
#[cfg(test)]
mod tests;
mod text;

pub use catalog::{CatalogPlan, GluePlan, HivePlan, WebhookPlan};
pub use file::*;
pub use table::default_parquet_plan;

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
    /// Where `/metrics`, `/healthz` and `/readyz` are served; `None`: nowhere.
    pub http_address: Option<String>,
    pub log: LogPlan,
    pub catalog: CatalogPlan,
    /// Path prefix of dead-letter objects below `storage.url` (e.g. `_errors`).
    pub dead_letter_prefix: String,
    /// With `dead_letter.kind = "kafka"`: the topic dead letters are produced to.
    pub dead_letter_topic: Option<String>,
    pub tables: Vec<TablePlan>,
}

#[derive(Clone)]
pub struct KafkaPlan {
    pub brokers: String,
    pub group_id: String,
    pub properties: BTreeMap<String, String>,
    /// librdkafka's prefetch (its queue and one fetch response), sized from the memory budget;
    /// `None` leaves librdkafka's defaults (tools that read offsets, not records).
    pub prefetch: Option<Prefetch>,
    /// `[kafka.aws_msk_iam]`, with its region resolved.
    pub msk_iam: Option<MskIamPlan>,
}

/// AWS MSK IAM sign-in (see [`crate::kafka::KafkaAuth`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MskIamPlan {
    pub region: String,
}

/// How much librdkafka may fetch ahead of the workers: its queue (`queued.max.messages.kbytes`,
/// counted in decompressed record bytes) and one fetch response (`fetch.max.bytes`, compressed),
/// which arrives while the queue is just under its limit and is decompressed into it. Reserved
/// from `pipeline.max_buffered_bytes`: the queue, and the response four times over (itself and
/// what it decompresses to: lz4 and zstd shrink JSON batches ~3–10×, so a topic that compresses
/// well can overshoot a little).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefetch {
    pub queue_bytes: u64,
    pub fetch_max_bytes: u64,
}

impl Prefetch {
    /// Lakesink's choice for a budget: an eighth of it, between 4 and 128 MiB; half for the
    /// queue, an eighth for a fetch response (at least 256 KiB). A 1 GiB budget keeps
    /// librdkafka's default queue (64 MiB) with 16 MiB fetches; a small budget gets a small
    /// prefetch instead of the ~114 MiB (and more, decompressed) of librdkafka's defaults beside
    /// it. Values the user set in `[kafka.properties]` are taken as they are (and reserved as
    /// they are).
    pub fn for_budget(
        budget: u64,
        properties: &BTreeMap<String, String>,
    ) -> Result<Prefetch, String> {
        let share = (budget / 8).clamp(4 << 20, 128 << 20);
        let number = |key: &str| -> Result<Option<u64>, String> {
            properties
                .get(key)
                .map(|v| {
                    v.trim().parse::<u64>().map_err(|_| {
                        format!("kafka.properties.\"{key}\" = \"{v}\": not a whole number")
                    })
                })
                .transpose()
        };
        // librdkafka refuses a fetch.max.bytes below message.max.bytes: a user's larger
        // message.max.bytes raises the fetch (and what is reserved for it).
        let message_max = number("message.max.bytes")?.unwrap_or(0);
        let p = Prefetch {
            queue_bytes: number("queued.max.messages.kbytes")?.map_or(share / 2, |kb| kb << 10),
            fetch_max_bytes: number("fetch.max.bytes")?
                .unwrap_or((share / 8).max(256 << 10).max(message_max)),
        };
        if p.fetch_max_bytes < message_max {
            return Err(format!(
                "kafka.properties.\"fetch.max.bytes\" = {} is below \"message.max.bytes\" = {message_max}: librdkafka refuses that; raise fetch.max.bytes",
                p.fetch_max_bytes
            ));
        }
        if p.total() > budget / 2 {
            return Err(format!(
                "librdkafka's prefetch (queued.max.messages.kbytes = {} KiB, and fetch.max.bytes = {}, at least message.max.bytes, reserved four times over) would take more than half of pipeline.max_buffered_bytes ({}): lower them or raise the budget",
                p.queue_bytes >> 10,
                p.fetch_max_bytes,
                budget
            ));
        }
        Ok(p)
    }

    /// Bytes reserved from the budget: the queue, and a fetch response with what it
    /// decompresses to.
    pub fn total(&self) -> u64 {
        self.queue_bytes + 4 * self.fetch_max_bytes
    }
}

impl KafkaPlan {
    /// Brokers and a group, no other client property (tests and tools on a plain broker).
    pub fn plain(brokers: &str, group: &str) -> KafkaPlan {
        KafkaPlan {
            brokers: brokers.to_string(),
            group_id: group.to_string(),
            properties: BTreeMap::new(),
            prefetch: None,
            msk_iam: None,
        }
    }
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
    /// It was `"auto"` (a share of the cgroup's memory limit).
    pub max_buffered_auto: bool,
    pub part_size: usize,
    pub workers: usize,
    pub drain_timeout: Duration,
    pub commit_interval: Duration,
    /// See [`PipelineSection::commit_timeout`].
    pub commit_timeout: Duration,
}

/// The validated `[log]`.
#[derive(Clone, Copy, Debug)]
pub struct LogPlan {
    pub format: LogFormat,
    /// How often the steady line is logged; zero: never.
    pub interval: Duration,
}

/// Output format of a table (`format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Format {
    #[serde(rename = "json.gz", alias = "jsongz", alias = "ndjson.gz")]
    JsonGz,
    #[serde(rename = "parquet")]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum BadRecord {
    #[serde(rename = "fail")]
    Fail,
    #[serde(rename = "dlq")]
    DeadLetter,
}

/// What a record for a partition sealed before its segment began does ([`crate::seal`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum LateAfterSeal {
    /// Written; the partition is sealed again with the next generation.
    #[serde(rename = "append")]
    Append,
    /// To the dead-letter destination with reason `late_after_seal`.
    #[serde(rename = "dlq")]
    DeadLetter,
}

/// `[tables.compact]`, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactPlan {
    pub target_size: u64,
    pub min_files: usize,
    pub grace: Duration,
    pub auto: bool,
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
    /// See [`crate::watermark`].
    pub allowed_lateness: Duration,
    /// Whether its partitions are sealed ([`crate::seal`]).
    pub seal: bool,
    pub late_after_seal: LateAfterSeal,
    /// How its sealed partitions are compacted ([`crate::compact`]); `None`: never.
    pub compact: Option<CompactPlan>,
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

    /// Parses and validates config text; `origin` names it in errors. `${VAR}` and secret
    /// `…_file` keys are substituted from the process environment and the file system.
    pub fn from_toml(text: &str, origin: &str) -> Result<Plan, ConfigError> {
        Plan::from_toml_with(text, origin, &text::Process)
    }

    fn from_toml_with(
        text: &str,
        origin: &str,
        lookup: &dyn text::Lookup,
    ) -> Result<Plan, ConfigError> {
        let syntax = |message: String| ConfigError::Syntax {
            path: origin.to_string(),
            message,
        };
        let text = text::substitute(text, lookup).map_err(|e| syntax(e.to_string()))?;
        let file: ConfigFile =
            toml::from_str(&text).map_err(|e| syntax(text::describe(&e, &text)))?;
        Plan::from_file(file, origin)
    }

    fn from_file(file: ConfigFile, origin: &str) -> Result<Plan, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: origin.to_string(),
            message,
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

        let msk_iam = match &file.kafka.aws_msk_iam {
            None => None,
            Some(section) => Some(MskIamPlan {
                region: msk_iam_region(section, &file.kafka).map_err(invalid)?,
            }),
        };

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
        if p.part_size < ByteSize::mib(5) {
            return Err(invalid(format!(
                "pipeline.part_size = {} is below S3's 5 MiB minimum part size",
                p.part_size
            )));
        }
        let max_buffered_bytes = p.max_buffered_bytes.resolve(cgroup_memory_limit());
        if max_buffered_bytes < 2 * p.part_size.0 {
            return Err(invalid(format!(
                "pipeline.max_buffered_bytes ({}{}) must be at least twice pipeline.part_size ({})",
                ByteSize(max_buffered_bytes),
                if p.max_buffered_bytes == MaxBuffered::Auto {
                    ", \"auto\": half the container's memory limit"
                } else {
                    ""
                },
                p.part_size
            )));
        }
        let prefetch =
            Prefetch::for_budget(max_buffered_bytes, &file.kafka.properties).map_err(invalid)?;
        let workers = if p.workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            p.workers
        };
        let pipeline = PipelinePlan {
            max_buffered_bytes,
            max_buffered_auto: p.max_buffered_bytes == MaxBuffered::Auto,
            part_size: p.part_size.0 as usize,
            workers,
            drain_timeout: p.drain_timeout.0,
            commit_interval: p.commit_interval.0,
            commit_timeout: p.commit_timeout.0,
        };
        let http_address = match file.http.address.trim() {
            "" => None,
            a => match a.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Some(a.to_string())
                }
                _ => {
                    return Err(invalid(format!(
                        "http.address = \"{a}\": use host:port (\"0.0.0.0:9464\"), or \"\" for no listener"
                    )))
                }
            },
        };
        let log = LogPlan {
            format: file.log.format,
            interval: file.log.interval.0,
        };

        if file.tables.is_empty() {
            return Err(invalid("no [[tables]]: nothing to write".into()));
        }
        let mut tables = Vec::with_capacity(file.tables.len());
        for t in file.tables {
            tables.push(table::table_plan(t, origin)?);
        }
        let catalog = catalog::catalog_plan(&file.catalog, origin)?;
        if let Some(t) = tables.iter().find(|t| t.compact.is_some()) {
            if !matches!(catalog, CatalogPlan::Glue(_) | CatalogPlan::Hive(_)) {
                return Err(ConfigError::Table {
                    path: origin.to_string(),
                    table: t.name.clone(),
                    message: "[tables.compact] needs catalog kind \"glue\" or \"hive\": compaction writes a partition's files under a new location and moves the catalog's partition there in one call, so readers never see old and new files together; a table read by listing its directory (or through a webhook) cannot be switched that way".into(),
                });
            }
        }
        let dl = &file.dead_letter;
        let dead_letter_topic = match (dl.kind, &dl.topic) {
            (DeadLetterKind::Objects, None) => None,
            (DeadLetterKind::Kafka, Some(t)) if !t.trim().is_empty() => Some(t.trim().to_string()),
            (DeadLetterKind::Kafka, _) => {
                return Err(invalid(
                    "dead_letter.kind = \"kafka\" needs dead_letter.topic".into(),
                ))
            }
            (DeadLetterKind::Objects, Some(_)) => {
                return Err(invalid(
                    "dead_letter.topic applies to dead_letter.kind = \"kafka\"".into(),
                ))
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

        let retry_timeout = file.storage.retry_timeout.0;
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
                prefetch: Some(prefetch),
                msk_iam,
            },
            storage: StoragePlan {
                url,
                retry_timeout,
                options: file.storage.options,
                unfenced: file.storage.unfenced,
            },
            pipeline,
            http_address,
            log,
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

/// The region `[kafka.aws_msk_iam]` signs for, and that nothing else in `[kafka.properties]`
/// asks for another way to sign in.
fn msk_iam_region(
    section: &file::MskIamSection,
    kafka: &file::KafkaSection,
) -> Result<String, String> {
    for key in ["sasl.mechanism", "sasl.mechanisms"] {
        if let Some(v) = kafka.properties.get(key) {
            if !v.eq_ignore_ascii_case("OAUTHBEARER") {
                return Err(format!(
                    "kafka.properties.\"{key}\" = \"{v}\" and [kafka.aws_msk_iam]: MSK IAM is SASL/OAUTHBEARER; remove one"
                ));
            }
        }
    }
    if kafka
        .properties
        .get("sasl.oauthbearer.method")
        .is_some_and(|m| m.eq_ignore_ascii_case("oidc"))
    {
        return Err("kafka.properties.\"sasl.oauthbearer.method\" = \"oidc\" and [kafka.aws_msk_iam]: choose one way to get the token".into());
    }
    let set = |r: Option<String>| r.filter(|r| !r.trim().is_empty());
    let region = set(section.region.clone())
        .or_else(|| region_of(&kafka.brokers))
        .or_else(|| set(std::env::var("AWS_REGION").ok()))
        .or_else(|| set(std::env::var("AWS_DEFAULT_REGION").ok()));
    region.ok_or_else(|| {
        format!(
            "kafka.aws_msk_iam: no region: set region = \"…\" (kafka.brokers `{}` names none, and AWS_REGION is not set)",
            kafka.brokers
        )
    })
}

/// The region of an MSK bootstrap address: `b-1.name.abc123.c2.kafka.us-east-1.amazonaws.com`
/// (provisioned) or `boot-abc.c1.kafka-serverless.eu-west-1.amazonaws.com` (serverless).
fn region_of(brokers: &str) -> Option<String> {
    let host = brokers.split(',').next()?.trim().split(':').next()?;
    let labels: Vec<&str> = host.split('.').collect();
    labels.windows(3).find_map(|w| {
        (matches!(w[0], "kafka" | "kafka-serverless") && w[2] == "amazonaws")
            .then(|| w[1].to_string())
    })
}

impl fmt::Debug for KafkaPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaPlan")
            .field("brokers", &self.brokers)
            .field("group_id", &self.group_id)
            .field("properties", &redacted(&self.properties))
            .field("prefetch", &self.prefetch)
            .field("msk_iam", &self.msk_iam)
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
