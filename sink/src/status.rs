//! `lakesink status`: where each table stands, read from outside the daemon (it may run or
//! not): per Kafka partition the group's committed offset, the high watermark and the lag, the
//! last segment in the lake (from its claim), and the partitions the catalog holds. Each part
//! that cannot be read says why instead of failing the whole report.

use std::fmt::Write;

use serde::Serialize;

use crate::claim::Claims;
use crate::commit::Tp;
use crate::config::Plan;
use crate::error::Error;

/// Everything `status` found.
#[derive(Debug, Serialize)]
pub struct Status {
    pub group: String,
    pub storage: String,
    pub catalog: String,
    pub tables: Vec<TableStatus>,
}

#[derive(Debug, Serialize)]
pub struct TableStatus {
    pub table: String,
    /// Partitions the catalog holds (`None`: see `catalog_error`, or a catalog that cannot
    /// list), and the greatest partition path.
    pub catalog_partitions: Option<usize>,
    pub catalog_newest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog_error: Option<String>,
    /// The event time below which the table expects no more records (RFC 3339; absent while
    /// unknown), and the lateness it allows.
    pub watermark: Option<String>,
    pub allowed_lateness: String,
    pub partitions: Vec<PartitionStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PartitionStatus {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset (`None`: nothing committed).
    pub committed: Option<i64>,
    /// Kafka's low watermark (the oldest offset it still holds).
    pub low_watermark: Option<i64>,
    pub high_watermark: Option<i64>,
    pub lag: Option<i64>,
    pub last_segment: Option<SegmentStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SegmentStatus {
    pub generation: u32,
    pub start: i64,
    pub end: i64,
    pub records: u64,
    pub objects: usize,
    /// RFC 3339; absent for claims written before it was recorded.
    pub newest_event_time: Option<String>,
    pub written: String,
}

/// Reads the state of every table of `plan`.
pub async fn status(plan: &Plan) -> Result<Status, Error> {
    let lake = crate::storage::open(&plan.storage)?;
    let claims = std::sync::Arc::new(Claims::new(lake.store.clone(), lake.root.as_ref()));
    let offsets = crate::kafka::read_offsets(&plan.kafka, plan.topics()).await?;
    let kafka = partition_statuses(&offsets);
    let mut by_tp = std::collections::HashMap::new();
    for p in kafka.iter().flat_map(|(_, ps)| ps) {
        let mut p = p.clone();
        match claims.latest(&Tp::new(&p.topic, p.partition)).await {
            Ok(found) => {
                p.last_segment = found.map(|(c, written)| SegmentStatus {
                    generation: c.generation,
                    start: c.start,
                    end: c.end,
                    records: c.records,
                    objects: c.objects.len(),
                    newest_event_time: c.newest_event_micros.and_then(|us| {
                        chrono::DateTime::from_timestamp_micros(us).map(|t| t.to_rfc3339())
                    }),
                    written: written.to_rfc3339(),
                })
            }
            Err(e) => p.error = Some(format!("segment claims: {e}")),
        }
        by_tp.insert((p.topic.clone(), p.partition), p);
    }

    let mut tracker = crate::watermark::Tracker::new(claims.clone());
    let watermarks = match crate::watermark::from_offsets(plan, offsets, &mut tracker).await {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "the tables' watermarks could not be computed");
            Vec::new()
        }
    };
    let catalog = crate::catalog::open(plan)?;
    let mut tables = Vec::new();
    for mut ct in crate::catalog::tables(plan, &lake.url) {
        ct.create = false; // status only reads
        let (count, newest, error) = match plan.catalog {
            crate::config::CatalogPlan::None => (None, None, None),
            _ => match catalog.load(&ct).await {
                Ok(Some(mut paths)) => {
                    paths.sort();
                    (Some(paths.len()), paths.pop(), None)
                }
                Ok(None) => (None, None, None),
                Err(e) => (None, None, Some(e.to_string())),
            },
        };
        let table = plan
            .tables
            .iter()
            .find(|t| t.name == ct.name)
            .expect("catalog tables come from the plan");
        let mut partitions: Vec<PartitionStatus> = by_tp
            .values()
            .filter(|p| table.topics.contains(&p.topic))
            .cloned()
            .collect();
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        let watermark = watermarks
            .iter()
            .find(|(name, _)| name == &ct.name)
            .and_then(|(_, w)| *w)
            .and_then(chrono::DateTime::from_timestamp_micros)
            .map(|t| t.to_rfc3339());
        tables.push(TableStatus {
            watermark,
            allowed_lateness: crate::units::Span(table.allowed_lateness).to_string(),
            table: ct.name,
            catalog_partitions: count,
            catalog_newest: newest,
            catalog_error: error,
            partitions,
        });
    }
    Ok(Status {
        group: plan.kafka.group_id.clone(),
        storage: lake.url,
        catalog: catalog.kind().to_string(),
        tables,
    })
}

/// Per topic, its partitions with committed offsets and watermarks (see
/// [`crate::kafka::read_offsets`]), as the status reports them.
fn partition_statuses(
    offsets: &[(String, Vec<crate::kafka::PartitionOffsets>)],
) -> Vec<(String, Vec<PartitionStatus>)> {
    offsets
        .iter()
        .map(|(topic, parts)| {
            let parts = parts
                .iter()
                .map(|p| PartitionStatus {
                    topic: topic.clone(),
                    partition: p.partition,
                    committed: p.committed,
                    low_watermark: p.low,
                    high_watermark: p.high,
                    lag: p.high.map(|h| h - p.committed.unwrap_or(0)),
                    last_segment: None,
                    error: p.error.clone(),
                })
                .collect();
            (topic.clone(), parts)
        })
        .collect()
}

impl Status {
    /// The report for people.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "group {}, lake {}, catalog {}",
            self.group, self.storage, self.catalog
        );
        for t in &self.tables {
            let _ = write!(out, "table {}: ", t.table);
            let _ = match (&t.catalog_error, t.catalog_partitions) {
                (Some(e), _) => writeln!(out, "catalog: {e}"),
                (None, Some(n)) => writeln!(
                    out,
                    "{n} partitions in the catalog, the newest {}",
                    t.catalog_newest.as_deref().unwrap_or("-")
                ),
                (None, None) => writeln!(out, "(the catalog does not list partitions)"),
            };
            let _ = writeln!(
                out,
                "  watermark {} (allowed lateness {})",
                t.watermark
                    .as_deref()
                    .unwrap_or("- (a partition behind has committed nothing yet)"),
                t.allowed_lateness
            );
            for p in &t.partitions {
                let opt = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
                let _ = write!(
                    out,
                    "  {}[{}]: committed {}, high watermark {}, lag {}",
                    p.topic,
                    p.partition,
                    opt(p.committed),
                    opt(p.high_watermark),
                    opt(p.lag)
                );
                match &p.last_segment {
                    Some(s) => {
                        let _ = write!(
                            out,
                            "; last segment [{}, {}){} {} records in {} objects, newest event {}, written {}",
                            s.start,
                            s.end,
                            if s.generation > 0 {
                                format!(" (generation {})", s.generation)
                            } else {
                                String::new()
                            },
                            s.records,
                            s.objects,
                            s.newest_event_time.as_deref().unwrap_or("-"),
                            s.written
                        );
                    }
                    None => {
                        let _ = write!(out, "; no segment in the lake");
                    }
                }
                if let Some(e) = &p.error {
                    let _ = write!(out, " ({e})");
                }
                out.push('\n');
            }
        }
        out
    }
}
