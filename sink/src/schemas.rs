//! Schemas from a Confluent-compatible registry for one table: the subject's latest version
//! (resolved when the daemon starts: the table's columns for `ddl` and `create_table`, and the
//! schema of records that are plain JSON), and the writer schema of each Confluent-framed record
//! by its id, fetched once and cached, with its Parquet plan and Avro decoder. The Parquet plan
//! of an Avro schema carries the direct Avro → Arrow path when the schema allows it.
//!
//! A Parquet file holds records of one schema id. When a partition's records change schema id,
//! the writer cuts the segment before the first record of the new id (`CutReason::Schema`,
//! decided by the data, so a replay cuts at the same offset) and the new files use the new
//! schema.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use lakesink_schema_registry::avro_arrow::AvroArrow;
use lakesink_schema_registry::registry::{Registry, RegistryConfig, RegistryError};
use lakesink_schema_registry::source::{Resolved, SchemaKind};
use lakesink_schema_registry::wire::AvroDecoder;
use tokio::runtime::Handle;

use crate::encode::parquet::ParquetOptions;
use crate::encode::ParquetPlan;

/// A table's schema and where it came from.
#[derive(Debug)]
pub struct TableSchema {
    pub arrow: arrow_schema::SchemaRef,
    pub origin: String,
}

/// How long a record waits for an unreachable registry before the daemon stops.
const PATIENCE: Duration = Duration::from_secs(300);

/// A table's registry subject and what has been learnt from it.
pub struct TableRegistry {
    pub client: Registry,
    pub subject: String,
    latest: OnceLock<u32>,
    plans: Mutex<HashMap<u32, Arc<ParquetPlan>>>,
    avro: Mutex<HashMap<u32, Arc<AvroDecoder>>>,
}

impl std::fmt::Debug for TableRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableRegistry")
            .field("url", &self.client.url())
            .field("subject", &self.subject)
            .finish()
    }
}

/// What a Confluent-framed record's schema id gave.
pub struct WriterSchema {
    pub resolved: Arc<Resolved>,
    pub avro: Option<Arc<AvroDecoder>>,
}

impl TableRegistry {
    pub fn new(cfg: RegistryConfig, subject: String) -> Result<TableRegistry, RegistryError> {
        Ok(TableRegistry {
            client: Registry::new(cfg)?,
            subject,
            latest: OnceLock::new(),
            plans: Mutex::new(HashMap::new()),
            avro: Mutex::new(HashMap::new()),
        })
    }

    /// Asks for the subject's latest version (retrying an unreachable registry for a while).
    pub async fn resolve_latest(&self) -> Result<TableSchema, RegistryError> {
        let started = Instant::now();
        let mut wait = Duration::from_millis(200);
        loop {
            match self.client.latest(&self.subject).await {
                Ok((id, r)) => {
                    let _ = self.latest.set(id);
                    return Ok(TableSchema {
                        arrow: Arc::new(r.schema.clone()),
                        origin: r.origin.clone(),
                    });
                }
                Err(e) if e.is_transient() && started.elapsed() < Duration::from_secs(60) => {
                    tracing::warn!(error = %e, subject = %self.subject, "schema registry unreachable; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The id of the subject's latest version when the daemon started.
    pub fn latest_id(&self) -> Option<u32> {
        self.latest.get().copied()
    }

    /// The writer schema of `id`, fetched on a worker thread (blocking it) the first time. An
    /// unreachable registry is retried for [`PATIENCE`].
    pub fn writer_schema(&self, rt: &Handle, id: u32) -> Result<WriterSchema, RegistryError> {
        let resolved = match self.client.cached(id) {
            Some(r) => r,
            None => {
                let started = Instant::now();
                let mut wait = Duration::from_millis(200);
                loop {
                    match rt.block_on(self.client.by_id(id)) {
                        Ok(r) => break r,
                        Err(e) if e.is_transient() && started.elapsed() < PATIENCE => {
                            tracing::warn!(error = %e, id, "schema registry unreachable; retrying");
                            std::thread::sleep(wait);
                            wait = (wait * 2).min(Duration::from_secs(10));
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        };
        let avro = if resolved.kind == SchemaKind::Avro {
            let mut cache = self.avro.lock().expect("avro cache");
            match cache.get(&id) {
                Some(d) => Some(d.clone()),
                None => {
                    let d = Arc::new(AvroDecoder::new(&resolved.text).map_err(|e| {
                        RegistryError::Refused {
                            url: self.client.url().to_string(),
                            what: format!("schema id {id}"),
                            message: e.to_string(),
                        }
                    })?);
                    cache.insert(id, d.clone());
                    Some(d)
                }
            }
        } else {
            None
        };
        Ok(WriterSchema { resolved, avro })
    }

    /// The Parquet plan for records of schema `id` (its schema must be cached already).
    pub fn plan_for(&self, id: u32, options: &ParquetOptions) -> Result<Arc<ParquetPlan>, String> {
        let mut plans = self.plans.lock().expect("plans");
        if let Some(p) = plans.get(&id) {
            return Ok(p.clone());
        }
        let r = self
            .client
            .cached(id)
            .ok_or_else(|| format!("schema id {id} is not resolved"))?;
        let schema = TableSchema {
            arrow: Arc::new(r.schema.clone()),
            origin: r.origin.clone(),
        };
        let mut plan = crate::encode::parquet::plan(options, &schema.arrow, &schema.origin)?;
        // Avro records of a schema the direct path covers skip the JSON text.
        let avro = self.avro.lock().expect("avro cache").get(&id).cloned();
        if let Some(direct) = avro.and_then(|d| AvroArrow::new(&d, plan.schema.clone())) {
            plan = plan.with_avro(direct);
        }
        let plan = Arc::new(plan);
        plans.insert(id, plan.clone());
        Ok(plan)
    }

    /// The direct Avro → Arrow path for records of schema `id` in a Parquet table, if its
    /// schema allows one (`id` must have been through [`TableRegistry::writer_schema`]).
    pub fn direct(&self, id: u32, options: &ParquetOptions) -> Option<Arc<AvroArrow>> {
        self.plan_for(id, options).ok()?.avro.clone()
    }
}
