//! `kind = "hive"`: a Hive Metastore over Thrift (binary protocol, unframed, no SASL: the
//! metastore's defaults). Partitions are added with `add_partitions_req(ifNotExists = true)`,
//! each with a copy of the table's storage descriptor and its own location.
//!
//! Field ids follow `hive_metastore.thrift` (Hive 2.3, unchanged since in what is used here).

use std::time::Duration;

use futures::future::BoxFuture;

use super::thrift::{self, Reply, TValue, T_STRING, T_STRUCT};
use super::{Catalog, CatalogError, CatalogTable, NewPartition, SealedPartition};
use crate::config::{Format, HivePlan};

const KIND: &str = "hive";

pub struct HiveMetastore {
    address: String,
    timeout: Duration,
    /// Each table's storage descriptor, as `get_table` returned it.
    descriptors: super::Descriptors<TValue>,
}

/// How a metastore call ended.
enum Outcome {
    Ok(TValue),
    /// A declared exception: (field id of the exception, its message).
    Thrown(i16, String),
}

impl HiveMetastore {
    pub fn new(plan: &HivePlan) -> HiveMetastore {
        HiveMetastore {
            address: plan.address.clone(),
            timeout: plan.timeout,
            descriptors: super::Descriptors::new(),
        }
    }

    async fn call(&self, method: &'static str, args: TValue) -> Result<Outcome, CatalogError> {
        let address = self.address.clone();
        let timeout = self.timeout;
        let reply =
            tokio::task::spawn_blocking(move || thrift::call(&address, timeout, method, &args))
                .await
                .map_err(|e| CatalogError::Unreachable {
                    catalog: KIND,
                    message: format!("{method}: {e}"),
                })?
                .map_err(|e| CatalogError::Unreachable {
                    catalog: KIND,
                    message: format!("{method} at {}: {e}", self.address),
                })?;
        match reply {
            Reply::Application(message) => Err(CatalogError::Refused {
                catalog: KIND,
                what: method.to_string(),
                message,
            }),
            Reply::Result(TValue::Struct(fields)) => {
                Ok(match fields.into_iter().next() {
                    Some((0, v)) => Outcome::Ok(v),
                    Some((id, v)) => {
                        let message = v.field(1).and_then(TValue::as_str).unwrap_or_default();
                        Outcome::Thrown(id, message.to_string())
                    }
                    // A void method.
                    None => Outcome::Ok(TValue::Struct(Vec::new())),
                })
            }
            Reply::Result(_) => Err(CatalogError::Unreachable {
                catalog: KIND,
                message: format!("{method}: malformed reply"),
            }),
        }
    }

    fn refused(what: String, message: String) -> CatalogError {
        CatalogError::Refused {
            catalog: KIND,
            what,
            message,
        }
    }

    async fn get_table(&self, t: &CatalogTable) -> Result<Option<TValue>, CatalogError> {
        let args = TValue::Struct(vec![
            (1, TValue::str(&t.database)),
            (2, TValue::str(&t.table)),
        ]);
        match self.call("get_table", args).await? {
            Outcome::Ok(table) => Ok(Some(table)),
            // o2: NoSuchObjectException.
            Outcome::Thrown(2, _) => Ok(None),
            // Some versions report a missing database as MetaException.
            Outcome::Thrown(_, m) if m.contains("not found") || m.contains("does not exist") => {
                Ok(None)
            }
            Outcome::Thrown(_, m) => Err(Self::refused(
                format!("get_table {}.{}", t.database, t.table),
                m,
            )),
        }
    }

    async fn create(&self, t: &CatalogTable) -> Result<(), CatalogError> {
        let lake = t
            .location
            .trim_end_matches('/')
            .rsplit_once('/')
            .map_or(t.location.as_str(), |(base, _)| base);
        let database = TValue::Struct(vec![
            (1, TValue::str(&t.database)),
            (2, TValue::str("Lakesink tables")),
            (3, TValue::str(lake)),
            (4, TValue::string_map(&[])),
        ]);
        match self
            .call("create_database", TValue::Struct(vec![(1, database)]))
            .await?
        {
            // o1: AlreadyExistsException.
            Outcome::Ok(_) | Outcome::Thrown(1, _) => {}
            Outcome::Thrown(_, m) => {
                return Err(Self::refused(format!("create_database {}", t.database), m))
            }
        }
        match self
            .call("create_table", TValue::Struct(vec![(1, table_struct(t))]))
            .await?
        {
            Outcome::Ok(_) => {
                tracing::info!(database = %t.database, table = %t.table, "Hive table created");
                Ok(())
            }
            Outcome::Thrown(1, _) => Ok(()),
            Outcome::Thrown(_, m) => Err(Self::refused(
                format!("create_table {}.{}", t.database, t.table),
                m,
            )),
        }
    }

    async fn partition_names(&self, t: &CatalogTable) -> Result<Vec<String>, CatalogError> {
        let args = TValue::Struct(vec![
            (1, TValue::str(&t.database)),
            (2, TValue::str(&t.table)),
            (3, TValue::I16(-1)),
        ]);
        match self.call("get_partition_names", args).await? {
            Outcome::Ok(names) => Ok(names
                .as_list()
                .iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect()),
            Outcome::Thrown(_, m) => Err(Self::refused(
                format!("get_partition_names {}.{}", t.database, t.table),
                m,
            )),
        }
    }
}

/// The storage descriptor `create_table` declares (partition columns are separate).
fn storage_descriptor(t: &CatalogTable) -> TValue {
    let columns = TValue::List(
        T_STRUCT,
        t.columns
            .iter()
            .map(|(name, ty)| {
                TValue::Struct(vec![
                    (1, TValue::str(name)),
                    (2, TValue::str(ty)),
                    (3, TValue::str("")),
                ])
            })
            .collect(),
    );
    let location = &t.location;
    match t.format {
        Format::Parquet => TValue::Struct(vec![
            (1, columns),
            (2, TValue::str(location)),
            (
                3,
                TValue::str("org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"),
            ),
            (
                4,
                TValue::str("org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"),
            ),
            (5, TValue::Bool(false)),
            (6, TValue::I32(-1)),
            (
                7,
                TValue::Struct(vec![
                    (1, TValue::str("parquet")),
                    (
                        2,
                        TValue::str("org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"),
                    ),
                    (3, TValue::string_map(&[("serialization.format", "1")])),
                ]),
            ),
            (8, TValue::List(T_STRING, Vec::new())),
            (9, TValue::List(T_STRUCT, Vec::new())),
            (10, TValue::string_map(&[])),
        ]),
        Format::JsonGz => TValue::Struct(vec![
            (1, columns),
            (2, TValue::str(location)),
            (3, TValue::str("org.apache.hadoop.mapred.TextInputFormat")),
            (
                4,
                TValue::str("org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"),
            ),
            (5, TValue::Bool(true)),
            (6, TValue::I32(-1)),
            (
                7,
                TValue::Struct(vec![
                    (1, TValue::str("json")),
                    (2, TValue::str("org.apache.hive.hcatalog.data.JsonSerDe")),
                    (3, TValue::string_map(&[("serialization.format", "1")])),
                ]),
            ),
            (8, TValue::List(T_STRING, Vec::new())),
            (9, TValue::List(T_STRUCT, Vec::new())),
            (10, TValue::string_map(&[])),
        ]),
    }
}

fn table_struct(t: &CatalogTable) -> TValue {
    let keys = t
        .partition_columns
        .iter()
        .map(|c| {
            TValue::Struct(vec![
                (1, TValue::str(c)),
                (2, TValue::str("string")),
                (3, TValue::str("")),
            ])
        })
        .collect();
    TValue::Struct(vec![
        (1, TValue::str(&t.table)),
        (2, TValue::str(&t.database)),
        (3, TValue::str("lakesink")),
        (4, TValue::I32(0)),
        (5, TValue::I32(0)),
        (6, TValue::I32(0)),
        (7, storage_descriptor(t)),
        (8, TValue::List(T_STRUCT, keys)),
        (
            9,
            match t.format {
                Format::JsonGz => {
                    TValue::string_map(&[("EXTERNAL", "TRUE"), ("compressionType", "gzip")])
                }
                Format::Parquet => TValue::string_map(&[("EXTERNAL", "TRUE")]),
            },
        ),
        (12, TValue::str("EXTERNAL_TABLE")),
    ])
}

impl Catalog for HiveMetastore {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn load<'a>(
        &'a self,
        t: &'a CatalogTable,
    ) -> BoxFuture<'a, Result<Option<Vec<String>>, CatalogError>> {
        Box::pin(async move {
            let table =
                super::table_or_create(KIND, t, || self.get_table(t), || self.create(t)).await?;
            let keys: Vec<&str> = table
                .field(8)
                .map(TValue::as_list)
                .unwrap_or_default()
                .iter()
                .filter_map(|k| k.field(1).and_then(TValue::as_str))
                .collect();
            super::check_partition_keys(KIND, t, &keys)?;
            let sd = table
                .field(7)
                .cloned()
                .unwrap_or_else(|| storage_descriptor(t));
            self.descriptors.keep(&t.name, sd);
            Ok(Some(self.partition_names(t).await?))
        })
    }

    fn register<'a>(
        &'a self,
        t: &'a CatalogTable,
        partitions: &'a [&'a NewPartition],
    ) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(async move {
            let sd = self.descriptors.get_or(&t.name, || storage_descriptor(t));
            let parts = partitions
                .iter()
                .map(|p| {
                    let mut sd = sd.clone();
                    sd.set_field(2, TValue::str(&p.location));
                    TValue::Struct(vec![
                        (1, TValue::string_list(&p.values())),
                        (2, TValue::str(&t.database)),
                        (3, TValue::str(&t.table)),
                        (4, TValue::I32(0)),
                        (5, TValue::I32(0)),
                        (6, sd),
                        (7, TValue::string_map(&[])),
                    ])
                })
                .collect();
            let request = TValue::Struct(vec![
                (1, TValue::str(&t.database)),
                (2, TValue::str(&t.table)),
                (3, TValue::List(T_STRUCT, parts)),
                (4, TValue::Bool(true)),
                (5, TValue::Bool(false)),
            ]);
            match self
                .call("add_partitions_req", TValue::Struct(vec![(1, request)]))
                .await?
            {
                // o2: AlreadyExistsException (with ifNotExists it should not come; still success).
                Outcome::Ok(_) | Outcome::Thrown(2, _) => Ok(()),
                Outcome::Thrown(_, m) => Err(Self::refused(
                    format!("add_partitions_req {}.{}", t.database, t.table),
                    m,
                )),
            }
        })
    }

    /// The partition's parameters get the seal's, merged into its own.
    fn seal<'a>(
        &'a self,
        t: &'a CatalogTable,
        s: &'a SealedPartition,
    ) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(async move {
            self.alter(t, &s.path, |partition| {
                let mut parameters: Vec<(TValue, TValue)> = match partition.field(7) {
                    Some(TValue::Map(_, _, entries)) => entries.clone(),
                    _ => Vec::new(),
                };
                for (k, v) in s.parameters() {
                    parameters.retain(|(key, _)| key.as_str() != Some(k));
                    parameters.push((TValue::str(k), TValue::str(&v)));
                }
                partition.set_field(7, TValue::Map(T_STRING, T_STRING, parameters));
            })
            .await
        })
    }

    fn relocate<'a>(
        &'a self,
        t: &'a CatalogTable,
        path: &'a str,
        location: &'a str,
    ) -> BoxFuture<'a, Result<(), CatalogError>> {
        Box::pin(async move {
            self.alter(t, path, |partition| {
                if let Some(mut sd) = partition.field(6).cloned() {
                    sd.set_field(2, TValue::str(location));
                    partition.set_field(6, sd);
                }
            })
            .await
        })
    }
}

impl HiveMetastore {
    /// `get_partition`, `change` it, `alter_partition`.
    async fn alter(
        &self,
        t: &CatalogTable,
        path: &str,
        change: impl FnOnce(&mut TValue),
    ) -> Result<(), CatalogError> {
        let what = || format!("alter_partition {}.{} {path}", t.database, t.table);
        let args = TValue::Struct(vec![
            (1, TValue::str(&t.database)),
            (2, TValue::str(&t.table)),
            (3, TValue::string_list(&super::partition_values(path))),
        ]);
        let mut partition = match self.call("get_partition", args).await? {
            Outcome::Ok(p) => p,
            Outcome::Thrown(_, m) => return Err(Self::refused(what(), m)),
        };
        change(&mut partition);
        let args = TValue::Struct(vec![
            (1, TValue::str(&t.database)),
            (2, TValue::str(&t.table)),
            (3, partition),
        ]);
        match self.call("alter_partition", args).await? {
            Outcome::Ok(_) => Ok(()),
            Outcome::Thrown(_, m) => Err(Self::refused(what(), m)),
        }
    }
}
