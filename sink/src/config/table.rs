//! One `[[tables]]` section validated into a [`TablePlan`]: format, schema, Parquet settings,
//! partition template, event time and limits.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::encode::ParquetPlan;

pub(super) fn table_plan(t: TableSection, origin: &str) -> Result<TablePlan, ConfigError> {
    let name = t.name.clone();
    let err = |message: String| ConfigError::Table {
        path: origin.to_string(),
        table: name.clone(),
        message,
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
    let format = t.format;
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
                parquet_options(&t.parquet.unwrap_or_default()).map_err(err)?,
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
        TimestampSection::Kafka => TimestampSource::Kafka,
        TimestampSection::Field { field, unit } => {
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
    let on_missing_timestamp = t.on_missing_timestamp;
    let on_bad_record = t.on_bad_record;
    let max_record_bytes = t.max_record_bytes.0;
    if t.compression_level > 9 {
        return Err(err(format!(
            "compression_level = {} (gzip levels are 0–9)",
            t.compression_level
        )));
    }
    let max_future_skew = t.max_future_skew.0;
    let compact = match &t.compact {
        None => None,
        Some(c) => {
            if !t.seal {
                return Err(err(
                    "[tables.compact] needs seal = true: only sealed partitions are compacted"
                        .into(),
                ));
            }
            if c.min_files < 2 || c.target_size.0 == 0 {
                return Err(err(
                    "[tables.compact]: min_files must be at least 2 and target_size positive"
                        .into(),
                ));
            }
            Some(CompactPlan {
                target_size: c.target_size.0,
                min_files: c.min_files,
                grace: c.grace.0,
                auto: c.auto,
            })
        }
    };
    if t.late_after_seal == super::LateAfterSeal::DeadLetter && !t.seal {
        return Err(err("late_after_seal = \"dlq\" needs seal = true".into()));
    }
    if t.rotate.max_records == 0 {
        return Err(err("rotate.max_records must be at least 1".into()));
    }
    let rotate = RotateLimits {
        max_records: t.rotate.max_records,
        max_bytes: t.rotate.max_bytes.0,
        max_age: t.rotate.max_age.0,
    };
    if rotate.max_bytes == 0 || rotate.max_age.is_zero() {
        return Err(err(
            "rotate.max_bytes and rotate.max_age must be positive".into()
        ));
    }

    let plan = TablePlan {
        name: t.name,
        topics: t.topics,
        format,
        partition,
        timestamp,
        timezone,
        on_missing_timestamp,
        max_future_skew,
        allowed_lateness: t.allowed_lateness.0,
        seal: t.seal,
        late_after_seal: t.late_after_seal,
        compact,
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
    };
    // A router for it can be built (at most so many fields read per record): found now, not
    // when the first partition is assigned.
    crate::route::TableRouter::new(&plan.route_rules()).map_err(|e| err(e.to_string()))?;
    Ok(plan)
}

/// The Parquet plan of a schema file (resolved as `schema = { file = … }` is) with the default
/// `[tables.parquet]` settings: the demo table's, for the benchmark's ceiling and probes.
pub fn default_parquet_plan(file: &str) -> Result<ParquetPlan, String> {
    let r = lakesink_schema_registry::source::resolve_file(file, &schema_dirs("."))
        .map_err(|e| e.to_string())?;
    let options = parquet_options(&ParquetSection::default())?;
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

/// `[tables.parquet]` validated: levels checked, choices turned into the writer's own types.
fn parquet_options(p: &ParquetSection) -> Result<ParquetOptions, String> {
    use parquet::basic::{Compression, GzipLevel, ZstdLevel};
    use parquet::file::properties::EnabledStatistics;

    let level_err = |e: parquet::errors::ParquetError| format!("parquet.compression_level: {e}");
    let compression = match p.compression {
        ParquetCompression::Zstd => Compression::ZSTD(
            ZstdLevel::try_new(p.compression_level.unwrap_or(3)).map_err(level_err)?,
        ),
        ParquetCompression::Gzip => Compression::GZIP(
            GzipLevel::try_new(p.compression_level.unwrap_or(6) as u32).map_err(level_err)?,
        ),
        ParquetCompression::Snappy => Compression::SNAPPY,
        ParquetCompression::Lz4 => Compression::LZ4_RAW,
        ParquetCompression::None => Compression::UNCOMPRESSED,
    };
    let statistics = match p.statistics {
        ParquetStatistics::Page => EnabledStatistics::Page,
        ParquetStatistics::Chunk => EnabledStatistics::Chunk,
        ParquetStatistics::None => EnabledStatistics::None,
    };
    if p.row_group_rows == 0 {
        return Err("parquet.row_group_rows must be at least 1".into());
    }
    if p.row_group_bytes.0 == 0 {
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
        row_group_bytes: p.row_group_bytes.0 as usize,
        bloom_filters: p.bloom_filters.clone(),
        bloom_filter_fpp: p.bloom_filter_fpp,
        strict: p.unknown_fields == UnknownFields::Fail,
        one_pass: p.one_pass,
    })
}
