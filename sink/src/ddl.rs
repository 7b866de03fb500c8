//! `lakesink ddl`: the `CREATE TABLE` statement of each table for Athena, Trino, Hive and Spark,
//! and the column list `catalog.create_table` declares in Glue and the Hive Metastore.
//!
//! Columns come from the table's schema. A `json.gz` table without one gets a single `line`
//! column read as text (every line whole: query it with `json_extract`). JSON tables declare
//! timestamps and dates as strings, the way the JSON SerDes read RFC 3339 text (Athena's own
//! CloudTrail table does the same); Parquet tables declare `timestamp`, since the files hold
//! `INT64 TIMESTAMP(MILLIS|MICROS, isAdjustedToUTC)`.
//!
//! For Athena the statement carries partition projection derived from `partition_by`, so
//! partitions need no crawler, no `MSCK REPAIR` and no catalog calls: a column filled by the
//! event time is a `date` projection (its Java format, a range from 2020 to `NOW`, the interval
//! and unit of its finest field) or, for an hour, day or month alone, an `integer` projection
//! with two digits; `{topic}` is an `enum` of the table's topics; `{partition}` and `{field:…}`
//! are `injected` (queries must name their values).

use crate::columns::columns;
pub use crate::columns::{ColumnError, Dialect};
use crate::config::{Format, TablePlan};
use crate::route::template::Piece;

#[derive(Debug, thiserror::Error)]
pub enum DdlError {
    #[error(transparent)]
    Column(#[from] ColumnError),
    #[error("no table named `{0}` in the config")]
    NoSuchTable(String),
}

/// Where the table lives and what it is called.
pub struct Target<'a> {
    pub database: &'a str,
    pub table: &'a str,
    /// The table's root, with a trailing slash (`s3://bucket/prefix/cloudtrail/`).
    pub location: &'a str,
}

/// The `CREATE TABLE` statement of `t` in `dialect`, ending with `;`.
pub fn statement(t: &TablePlan, target: &Target<'_>, dialect: Dialect) -> Result<String, DdlError> {
    let cols = columns(t, dialect)?;
    let parts = t.partition.partition_columns();
    let raw = t.schema.is_none();
    let parquet = t.format == Format::Parquet;
    let ident = |s: &str| match dialect {
        Dialect::Trino => format!("\"{}\"", s.replace('"', "\"\"")),
        _ => format!("`{}`", s.replace('`', "``")),
    };
    let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let mut out = String::new();
    let name = format!("{}.{}", ident(target.database), ident(target.table));
    match dialect {
        Dialect::Trino => {
            out.push_str(&format!("CREATE TABLE IF NOT EXISTS {name} (\n"));
            let mut all: Vec<String> = cols
                .iter()
                .map(|(c, ty)| format!("  {} {ty}", ident(c)))
                .collect();
            all.extend(parts.iter().map(|p| format!("  {} varchar", ident(p))));
            out.push_str(&all.join(",\n"));
            let format = if parquet {
                "PARQUET"
            } else if raw {
                "TEXTFILE"
            } else {
                "JSON"
            };
            out.push_str(&format!(
                "\n)\nWITH (\n  external_location = {},\n  format = {}",
                lit(target.location),
                lit(format)
            ));
            if !parts.is_empty() {
                let list: Vec<String> = parts.iter().map(|p| lit(p)).collect();
                out.push_str(&format!(",\n  partitioned_by = ARRAY[{}]", list.join(", ")));
            }
            out.push_str("\n);\n");
        }
        Dialect::Spark => {
            out.push_str(&format!("CREATE TABLE IF NOT EXISTS {name} (\n"));
            let mut all: Vec<String> = cols
                .iter()
                .map(|(c, ty)| format!("  {} {ty}", ident(c)))
                .collect();
            all.extend(parts.iter().map(|p| format!("  {} string", ident(p))));
            out.push_str(&all.join(",\n"));
            let using = if parquet {
                "parquet"
            } else if raw {
                "text"
            } else {
                "json"
            };
            out.push_str(&format!("\n)\nUSING {using}\n"));
            if !parts.is_empty() {
                let list: Vec<String> = parts.iter().map(|p| ident(p)).collect();
                out.push_str(&format!("PARTITIONED BY ({})\n", list.join(", ")));
            }
            out.push_str(&format!("LOCATION {};\n", lit(target.location)));
            if !parts.is_empty() {
                out.push_str(&format!(
                    "-- then, and after new partitions: ALTER TABLE {name} RECOVER PARTITIONS;\n"
                ));
            }
        }
        Dialect::Athena | Dialect::Hive => {
            out.push_str(&format!("CREATE EXTERNAL TABLE IF NOT EXISTS {name} (\n"));
            let all: Vec<String> = cols
                .iter()
                .map(|(c, ty)| format!("  {} {ty}", ident(c)))
                .collect();
            out.push_str(&all.join(",\n"));
            out.push_str("\n)\n");
            if !parts.is_empty() {
                let list: Vec<String> = parts
                    .iter()
                    .map(|p| format!("{} string", ident(p)))
                    .collect();
                out.push_str(&format!("PARTITIONED BY ({})\n", list.join(", ")));
            }
            if parquet {
                out.push_str("STORED AS PARQUET\n");
            } else if raw {
                // No field delimiter occurs in JSON text (control characters are escaped), so
                // each line lands whole in `line`.
                out.push_str("ROW FORMAT DELIMITED\nSTORED AS TEXTFILE\n");
            } else {
                let serde = if dialect == Dialect::Athena {
                    "org.openx.data.jsonserde.JsonSerDe"
                } else {
                    "org.apache.hive.hcatalog.data.JsonSerDe"
                };
                out.push_str(&format!(
                    "ROW FORMAT SERDE {}\nSTORED AS INPUTFORMAT 'org.apache.hadoop.mapred.TextInputFormat'\n  OUTPUTFORMAT 'org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat'\n",
                    lit(serde)
                ));
            }
            out.push_str(&format!("LOCATION {}", lit(target.location)));
            let mut props: Vec<(String, String)> = Vec::new();
            if parquet {
                props.push(("parquet.compression".into(), "ZSTD".into()));
            } else {
                props.push(("compressionType".into(), "gzip".into()));
            }
            if dialect == Dialect::Athena {
                match projection(t, target.location) {
                    Some(p) => props.extend(p),
                    None => out.push_str(
                        "\n-- partition projection: partition_by is not one `column=value` per path segment",
                    ),
                }
            }
            out.push_str("\nTBLPROPERTIES (\n");
            let list: Vec<String> = props
                .iter()
                .map(|(k, v)| format!("  {}={}", lit(k), lit(v)))
                .collect();
            out.push_str(&list.join(",\n"));
            out.push_str("\n);\n");
        }
    }
    Ok(out)
}

/// Athena partition-projection properties for the table's `partition_by`, if every path
/// segment is `column=value`.
fn projection(t: &TablePlan, location: &str) -> Option<Vec<(String, String)>> {
    // Split the pieces into path segments.
    let mut segments: Vec<Vec<Piece>> = vec![Vec::new()];
    for p in &t.partition.pieces {
        match p {
            Piece::Literal(l) => {
                let mut parts = l.split('/');
                if let Some(first) = parts.next() {
                    if !first.is_empty() {
                        segments.last_mut()?.push(Piece::Literal(first.into()));
                    }
                }
                for rest in parts {
                    segments.push(Vec::new());
                    if !rest.is_empty() {
                        segments.last_mut()?.push(Piece::Literal(rest.into()));
                    }
                }
            }
            other => segments.last_mut()?.push(other.clone()),
        }
    }
    let mut props = vec![("projection.enabled".to_string(), "true".to_string())];
    let mut template = location.to_string();
    for seg in &segments {
        // `column=` then the value's pieces.
        let Some(Piece::Literal(head)) = seg.first() else {
            return None;
        };
        let (column, value_head) = head.split_once('=')?;
        let mut value: Vec<Piece> = Vec::new();
        if !value_head.is_empty() {
            value.push(Piece::Literal(value_head.into()));
        }
        value.extend(seg[1..].iter().cloned());
        template.push_str(&format!("{column}=${{{column}}}/"));
        let key = |k: &str| format!("projection.{column}.{k}");
        let time_only = value
            .iter()
            .all(|p| matches!(p, Piece::Literal(_) | Piece::EventTime { .. }));
        if time_only && value.iter().any(|p| matches!(p, Piece::EventTime { .. })) {
            let strftime: String = value
                .iter()
                .map(|p| match p {
                    Piece::Literal(l) => l.replace('%', "%%"),
                    Piece::EventTime { format, .. } => format.clone(),
                    _ => unreachable!(),
                })
                .collect();
            match strftime.as_str() {
                "%H" => {
                    props.push((key("type"), "integer".into()));
                    props.push((key("range"), "0,23".into()));
                    props.push((key("digits"), "2".into()));
                }
                "%d" => {
                    props.push((key("type"), "integer".into()));
                    props.push((key("range"), "1,31".into()));
                    props.push((key("digits"), "2".into()));
                }
                "%m" => {
                    props.push((key("type"), "integer".into()));
                    props.push((key("range"), "1,12".into()));
                    props.push((key("digits"), "2".into()));
                }
                _ => {
                    let (java, unit) = java_date_format(&strftime)?;
                    let start = chrono::NaiveDate::from_ymd_opt(2020, 1, 1)?
                        .and_hms_opt(0, 0, 0)?
                        .format(&strftime)
                        .to_string();
                    props.push((key("type"), "date".into()));
                    props.push((key("format"), java));
                    props.push((key("range"), format!("{start},NOW")));
                    props.push((key("interval"), "1".into()));
                    props.push((key("interval.unit"), unit.into()));
                }
            }
        } else if value.len() == 1 && value[0] == Piece::Topic {
            props.push((key("type"), "enum".into()));
            props.push((key("values"), t.topics.join(",")));
        } else {
            props.push((key("type"), "injected".into()));
        }
    }
    props.push(("storage.location.template".into(), template));
    Some(props)
}

/// A strftime format as a Java `DateTimeFormatter` pattern, with the unit of its finest field.
fn java_date_format(f: &str) -> Option<(String, &'static str)> {
    let mut out = String::new();
    let mut rank = 0;
    let mut lit = String::new();
    let flush = |lit: &mut String, out: &mut String| {
        if !lit.is_empty() {
            if lit.chars().any(|c| c.is_ascii_alphabetic() || c == '\'') {
                out.push('\'');
                out.push_str(&lit.replace('\'', "''"));
                out.push('\'');
            } else {
                out.push_str(lit);
            }
            lit.clear();
        }
    };
    let mut chars = f.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            lit.push(c);
            continue;
        }
        let (pat, r) = match chars.next()? {
            'Y' => ("yyyy", 1),
            'y' => ("yy", 1),
            'm' => ("MM", 2),
            'd' => ("dd", 3),
            'j' => ("DDD", 3),
            'H' => ("HH", 4),
            'M' => ("mm", 5),
            'S' => ("ss", 6),
            '%' => {
                lit.push('%');
                continue;
            }
            _ => return None,
        };
        flush(&mut lit, &mut out);
        out.push_str(pat);
        rank = rank.max(r);
    }
    flush(&mut lit, &mut out);
    let unit = match rank {
        1 => "YEARS",
        2 => "MONTHS",
        3 => "DAYS",
        4 => "HOURS",
        5 => "MINUTES",
        6 => "SECONDS",
        _ => return None,
    };
    Some((out, unit))
}

/// The statements of a plan's tables (or of the one named), for `lakesink ddl`. Names and the
/// database are the catalog's (`catalog_table`, `catalog_database`, `catalog.database`, else
/// `default`) unless `database` is given; locations are below `storage.url`.
pub fn for_plan(
    plan: &crate::Plan,
    only: Option<&str>,
    database: Option<&str>,
    dialect: Dialect,
) -> Result<String, DdlError> {
    let base = plan.storage.url.as_str().trim_end_matches('/');
    let tables = crate::catalog::tables(plan, base);
    let mut out = String::new();
    for (t, c) in plan.tables.iter().zip(&tables) {
        if only.is_some_and(|n| n != t.name) {
            continue;
        }
        let database = match database {
            Some(d) => d,
            None if c.database.is_empty() => "default",
            None => &c.database,
        };
        let target = Target {
            database,
            table: &c.table,
            location: &c.location,
        };
        out.push_str(&format!(
            "-- table `{}` ({})
",
            t.name,
            t.format.extension()
        ));
        out.push_str(&statement(t, &target, dialect)?);
        out.push('\n');
    }
    if out.is_empty() {
        return Err(DdlError::NoSuchTable(only.unwrap_or_default().to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Plan;

    fn plan(table: &str) -> Plan {
        let text = format!(
            r#"
[kafka]
brokers = "localhost:9092"
group_id = "g"
[storage]
url = "s3://lake/prefix"
{table}
"#
        );
        Plan::from_toml(&text, "test.toml").unwrap()
    }

    fn target() -> Target<'static> {
        Target {
            database: "logs",
            table: "ct",
            location: "s3://lake/prefix/ct/",
        }
    }

    #[test]
    fn athena_parquet_has_typed_columns_and_projection_from_the_template() {
        let p = plan(
            r#"[[tables]]
name = "ct"
topics = ["cloudtrail"]
format = "parquet"
schema = { file = "cloudtrail.avsc" }
partition_by = "region={field:awsRegion}/date={event_time:%Y-%m-%d}/hour={event_time:%H}"
timestamp = { field = "eventTime" }"#,
        );
        let sql = statement(&p.tables[0], &target(), Dialect::Athena).unwrap();
        for want in [
            "CREATE EXTERNAL TABLE IF NOT EXISTS `logs`.`ct` (",
            "  `eventTime` timestamp,",
            "`userIdentity` struct<`type`:string,",
            "`creationDate`:timestamp",
            "`resources` array<struct<`ARN`:string,`accountId`:string,`type`:string>>",
            "PARTITIONED BY (`region` string, `date` string, `hour` string)",
            "STORED AS PARQUET",
            "LOCATION 's3://lake/prefix/ct/'",
            "'projection.enabled'='true'",
            "'projection.region.type'='injected'",
            "'projection.date.type'='date'",
            "'projection.date.format'='yyyy-MM-dd'",
            "'projection.date.range'='2020-01-01,NOW'",
            "'projection.date.interval'='1'",
            "'projection.date.interval.unit'='DAYS'",
            "'projection.hour.type'='integer'",
            "'projection.hour.range'='0,23'",
            "'projection.hour.digits'='2'",
            "'storage.location.template'='s3://lake/prefix/ct/region=${region}/date=${date}/hour=${hour}/'",
        ] {
            assert!(sql.contains(want), "missing {want}\n{sql}");
        }
    }

    #[test]
    fn schema_less_json_gets_one_line_column_and_hourly_dates_project_by_hours() {
        let p = plan(
            r#"[[tables]]
name = "raw"
topics = ["a", "b"]
partition_by = "dt={event_time:%Y-%m-%d-%H}/topic={topic}""#,
        );
        let t = &p.tables[0];
        let sql = statement(t, &target(), Dialect::Athena).unwrap();
        assert!(sql.contains("  `line` string\n)"), "{sql}");
        assert!(
            sql.contains("ROW FORMAT DELIMITED\nSTORED AS TEXTFILE"),
            "{sql}"
        );
        assert!(
            sql.contains("'projection.dt.format'='yyyy-MM-dd-HH'"),
            "{sql}"
        );
        assert!(
            sql.contains("'projection.dt.range'='2020-01-01-00,NOW'"),
            "{sql}"
        );
        assert!(
            sql.contains("'projection.dt.interval.unit'='HOURS'"),
            "{sql}"
        );
        assert!(sql.contains("'projection.topic.type'='enum'"), "{sql}");
        assert!(sql.contains("'projection.topic.values'='a,b'"), "{sql}");
        let trino = statement(t, &target(), Dialect::Trino).unwrap();
        assert!(trino.contains("format = 'TEXTFILE'"), "{trino}");
        assert!(
            trino.contains("partitioned_by = ARRAY['dt', 'topic']"),
            "{trino}"
        );
    }

    #[test]
    fn json_tables_with_a_schema_declare_times_as_strings_and_trino_uses_rows() {
        let p = plan(
            r#"[[tables]]
name = "ct"
topics = ["cloudtrail"]
schema = { file = "cloudtrail.avsc" }"#,
        );
        let t = &p.tables[0];
        let hive = statement(t, &target(), Dialect::Hive).unwrap();
        assert!(hive.contains("`eventTime` string"), "{hive}");
        assert!(
            hive.contains("'org.apache.hive.hcatalog.data.JsonSerDe'"),
            "{hive}"
        );
        let trino = statement(t, &target(), Dialect::Trino).unwrap();
        assert!(
            trino.contains("\"userIdentity\" row(\"type\" varchar"),
            "{trino}"
        );
        assert!(trino.contains("format = 'JSON'"), "{trino}");
        assert!(
            trino.contains("\"date\" varchar,\n  \"hour\" varchar\n)"),
            "{trino}"
        );
        let spark = statement(t, &target(), Dialect::Spark).unwrap();
        assert!(
            spark.contains("USING json\nPARTITIONED BY (`date`, `hour`)"),
            "{spark}"
        );
    }

    #[test]
    fn strftime_to_java() {
        assert_eq!(
            java_date_format("%Y/%m/%dT%H").unwrap(),
            ("yyyy/MM/dd'T'HH".to_string(), "HOURS")
        );
        assert_eq!(java_date_format("%Y").unwrap().1, "YEARS");
        assert!(java_date_format("%a").is_none());
    }
}
