//! The columns of a table in the Hive family's and Trino's types, from its schema: what
//! `lakesink ddl` declares, and what `catalog.create_table` declares in Glue and the Hive
//! Metastore. One place, so that the two agree.

use arrow_schema::{DataType, Field, TimeUnit};

use crate::config::{Format, TablePlan};

#[derive(Debug, thiserror::Error)]
pub enum ColumnError {
    #[error(
        "table `{table}`: column `{column}` has type {data_type}, which {dialect} cannot declare"
    )]
    Type {
        table: String,
        column: String,
        data_type: String,
        dialect: &'static str,
    },
    #[error("unknown dialect `{0}` (use athena, trino, hive or spark)")]
    Dialect(String),
}

/// The SQL flavour of a statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Athena,
    Trino,
    Hive,
    Spark,
}

impl std::str::FromStr for Dialect {
    type Err = ColumnError;
    fn from_str(s: &str) -> Result<Self, ColumnError> {
        match s {
            "athena" => Ok(Dialect::Athena),
            "trino" | "presto" => Ok(Dialect::Trino),
            "hive" => Ok(Dialect::Hive),
            "spark" => Ok(Dialect::Spark),
            other => Err(ColumnError::Dialect(other.to_string())),
        }
    }
}

impl Dialect {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Dialect::Athena => "athena",
            Dialect::Trino => "trino",
            Dialect::Hive => "hive",
            Dialect::Spark => "spark",
        }
    }
}

/// The data columns of a table (partition columns excluded) as (name, Hive type): what
/// `catalog.create_table` declares.
pub(crate) fn hive_columns(t: &TablePlan) -> Result<Vec<(String, String)>, ColumnError> {
    columns(t, Dialect::Hive)
}

pub(crate) fn columns(
    t: &TablePlan,
    dialect: Dialect,
) -> Result<Vec<(String, String)>, ColumnError> {
    let Some(schema) = &t.schema else {
        let ty = if dialect == Dialect::Trino {
            "varchar"
        } else {
            "string"
        };
        return Ok(vec![("line".into(), ty.into())]);
    };
    let json = t.format == Format::JsonGz;
    let partition_columns = t.partition.partition_columns();
    schema
        .arrow
        .fields()
        .iter()
        // A data column named like a partition column would clash; the partition wins.
        .filter(|f| {
            !partition_columns
                .iter()
                .any(|p| p.eq_ignore_ascii_case(f.name()))
        })
        .map(|f| {
            let ty = if dialect == Dialect::Trino {
                trino_type(f.data_type(), json)
            } else {
                hive_type(f.data_type(), json)
            };
            ty.map(|ty| (f.name().clone(), ty))
                .ok_or_else(|| ColumnError::Type {
                    table: t.name.clone(),
                    column: f.name().clone(),
                    data_type: f.data_type().to_string(),
                    dialect: dialect.name(),
                })
        })
        .collect()
}

pub(crate) fn quote_field(f: &Field) -> String {
    format!("`{}`", f.name().replace('`', "``"))
}

/// The Hive (and Athena, Spark, Glue) type of an Arrow type; `json` for JSON SerDe tables.
pub(crate) fn hive_type(dt: &DataType, json: bool) -> Option<String> {
    sql_type(dt, json, false)
}

/// The Trino type of an Arrow type.
pub(crate) fn trino_type(dt: &DataType, json: bool) -> Option<String> {
    sql_type(dt, json, true)
}

/// Hive-family or (with `trino`) Trino spelling of an Arrow type. JSON tables declare binary,
/// dates and timestamps as strings: the JSON SerDes read them as text.
fn sql_type(dt: &DataType, json: bool, trino: bool) -> Option<String> {
    // (Hive name, Trino name)
    let pick =
        |hive: &str, trino_name: &str| Some(if trino { trino_name } else { hive }.to_string());
    let text = || pick("string", "varchar");
    match dt {
        DataType::Null | DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => text(),
        DataType::Boolean => pick("boolean", "boolean"),
        DataType::Int8 => pick("tinyint", "tinyint"),
        DataType::Int16 | DataType::UInt8 => pick("smallint", "smallint"),
        DataType::Int32 | DataType::UInt16 => pick("int", "integer"),
        DataType::Int64 | DataType::UInt32 => pick("bigint", "bigint"),
        DataType::UInt64 => pick("decimal(20,0)", "decimal(20,0)"),
        DataType::Float16 | DataType::Float32 => pick("float", "real"),
        DataType::Float64 => pick("double", "double"),
        DataType::Binary | DataType::LargeBinary | DataType::FixedSizeBinary(_) if json => text(),
        DataType::Binary | DataType::LargeBinary | DataType::FixedSizeBinary(_) => {
            pick("binary", "varbinary")
        }
        DataType::Date32 | DataType::Date64 if json => text(),
        DataType::Date32 | DataType::Date64 => pick("date", "date"),
        DataType::Timestamp(..) if json => text(),
        DataType::Timestamp(unit, _) => pick(
            "timestamp",
            match unit {
                TimeUnit::Second => "timestamp(0)",
                TimeUnit::Millisecond => "timestamp(3)",
                _ => "timestamp(6)",
            },
        ),
        DataType::Time32(_) => pick("int", "integer"),
        DataType::Time64(_) => pick("bigint", "bigint"),
        DataType::Decimal128(p, s) if *p <= 38 => Some(format!("decimal({p},{s})")),
        DataType::Struct(fields) => {
            let inner: Option<Vec<String>> = fields
                .iter()
                .map(|f| {
                    let ty = sql_type(f.data_type(), json, trino)?;
                    Some(if trino {
                        format!("\"{}\" {ty}", f.name().replace('"', "\"\""))
                    } else {
                        format!("{}:{ty}", quote_field(f))
                    })
                })
                .collect();
            let inner = inner?;
            Some(if trino {
                format!("row({})", inner.join(", "))
            } else {
                format!("struct<{}>", inner.join(","))
            })
        }
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            let item = sql_type(f.data_type(), json, trino)?;
            Some(if trino {
                format!("array({item})")
            } else {
                format!("array<{item}>")
            })
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                let k = sql_type(kv[0].data_type(), json, trino)?;
                let v = sql_type(kv[1].data_type(), json, trino)?;
                Some(if trino {
                    format!("map({k}, {v})")
                } else {
                    format!("map<{k},{v}>")
                })
            }
            _ => None,
        },
        _ => None,
    }
}
