//! `lakesink check`: validates the config, reaches the broker and the store, and prints the
//! resolved plan with secrets redacted.

use std::fmt::Write;
use std::time::Duration;

use rdkafka::consumer::Consumer;

use crate::config::{redacted, CatalogPlan, Plan};
use crate::consume::{client_config, ConsumeError};
use crate::error::Error;
use crate::units::human_bytes;

/// Checks everything a run needs and returns the plan as text.
pub async fn check(plan: &Plan) -> Result<String, Error> {
    let mut out = String::new();
    let _ = writeln!(out, "config: {} (valid)", plan.source);

    // Broker: metadata of every topic.
    let consumer =
        crate::kafka::consumer(&plan.kafka, &client_config(&plan.kafka)).map_err(|source| {
            ConsumeError::Create {
                brokers: plan.kafka.brokers.clone(),
                source,
            }
        })?;
    let kafka = plan.kafka.clone();
    let topics = plan.topics();
    let partitions =
        tokio::task::spawn_blocking(move || -> Result<Vec<(String, usize)>, ConsumeError> {
            let mut v = Vec::new();
            for t in &topics {
                let md = consumer
                    .fetch_metadata(Some(t), Duration::from_secs(10))
                    .map_err(|source| ConsumeError::Metadata {
                        brokers: kafka.brokers.clone(),
                        source,
                    })?;
                match md.topics().first() {
                    Some(mt) if mt.error().is_none() && !mt.partitions().is_empty() => {
                        v.push((t.clone(), mt.partitions().len()))
                    }
                    _ => {
                        return Err(ConsumeError::NoTopic {
                            topic: t.clone(),
                            brokers: kafka.brokers.clone(),
                        })
                    }
                }
            }
            Ok(v)
        })
        .await
        .map_err(|source| Error::Task {
            what: "the broker check",
            source,
        })??;
    let _ = writeln!(
        out,
        "kafka: {} group {} (reachable)",
        plan.kafka.brokers, plan.kafka.group_id
    );
    for (k, v) in redacted(&plan.kafka.properties) {
        let _ = writeln!(out, "  {k} = {v}");
    }
    if let Some(m) = &plan.kafka.msk_iam {
        let _ = writeln!(
            out,
            "  AWS MSK IAM: SASL/OAUTHBEARER over TLS, tokens signed for {} with the AWS credential chain",
            m.region
        );
    }
    for (t, n) in &partitions {
        let _ = writeln!(out, "  topic {t}: {n} partitions{}", lag(plan, t, *n).await);
    }

    // Store: list the root (proves the bucket exists and the credentials can read it).
    let lake = crate::storage::open(&plan.storage)?;
    let store_err = |source| Error::Store {
        url: lake.url.clone(),
        source,
    };
    lake.store
        .list_with_delimiter(Some(&lake.root))
        .await
        .map_err(store_err)?;
    let _ = writeln!(
        out,
        "storage: {} (reachable; a failing request is retried for {:?})",
        lake.url, plan.storage.retry_timeout
    );
    for (k, v) in redacted(&plan.storage.options) {
        let _ = writeln!(out, "  {k} = {v}");
    }
    // Segment claims fence concurrent writers only where a create-only write is refused the
    // second time (DESIGN.md, "Segment claims").
    let create_only = crate::claim::probe_create_only(&lake.store, lake.root.as_ref())
        .await
        .map_err(store_err)?;
    let _ = writeln!(
        out,
        "  conditional writes: {}",
        match create_only {
            crate::claim::CreateOnly::Enforced =>
                "enforced (segment claims fence concurrent writers: exactly once)",
            crate::claim::CreateOnly::Ignored | crate::claim::CreateOnly::NotSupported =>
                match plan.storage.unfenced {
                    crate::config::Unfenced::Refuse => "NOT enforced (the store accepted a second create-only write, or its client has none: for S3, set storage.options.conditional_put = \"etag\"): `lakesink run` refuses to start; storage.unfenced = \"at_least_once\" runs it anyway",
                    crate::config::Unfenced::AtLeastOnce => "NOT enforced; storage.unfenced = \"at_least_once\": replays are exactly once, a writer that lost its partition may duplicate records (new files get keys of their writer's own), none is overwritten",
                },
        }
    );
    // Reach the catalog: each table as it stands there (nothing is created).
    let mut found_tables = Vec::new();
    if !matches!(plan.catalog, CatalogPlan::None) {
        let client = crate::catalog::open(plan)?;
        for mut t in crate::catalog::tables(plan, &lake.url) {
            let create = t.create;
            t.create = false;
            let found = match client.load(&t).await {
                Ok(Some(paths)) => format!("found, {} partitions", paths.len()),
                Ok(None) => "reachable (a webhook is not asked what it has: nothing to check before the first POST)".into(),
                Err(e) if create && e.is_no_such_table() => {
                    "not there yet: created at the first registration (create_table = true)".into()
                }
                Err(e) => return Err(e.into()),
            };
            found_tables.push(format!("  table {}.{}: {found}", t.database, t.table));
        }
    }
    describe(plan, &found_tables, &mut out);
    Ok(out)
}

/// The group's committed position and lag on a topic, for the plan's print-out.
async fn lag(plan: &Plan, topic: &str, partitions: usize) -> String {
    let (kafka, topic) = (plan.kafka.clone(), topic.to_string());
    let n = partitions as i32;
    let r = tokio::task::spawn_blocking(move || {
        let ends = crate::consume::high_watermarks(&kafka, &topic, n)?;
        let committed = crate::consume::committed_offsets(&kafka, &topic, n)?;
        Ok::<_, rdkafka::error::KafkaError>((ends, committed))
    })
    .await;
    match r {
        Ok(Ok((ends, committed))) => {
            let total: i64 = ends.values().sum();
            let lag: i64 = ends
                .iter()
                .map(|(p, e)| e - committed.get(p).copied().unwrap_or(0))
                .sum();
            format!(
                ", {total} records, group has {} partitions committed, lag {lag} records",
                committed.len()
            )
        }
        _ => String::new(),
    }
}

/// `check --offline`: the config parsed and planned, nothing reached (no broker, store,
/// catalog or schema registry).
pub fn offline(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "config: {} (valid; offline: broker, store, catalog and schema registry not reached)",
        plan.source
    );
    let _ = writeln!(
        out,
        "kafka: {} group {}",
        plan.kafka.brokers, plan.kafka.group_id
    );
    for (k, v) in redacted(&plan.kafka.properties) {
        let _ = writeln!(out, "  {k} = {v}");
    }
    if let Some(m) = &plan.kafka.msk_iam {
        let _ = writeln!(
            out,
            "  AWS MSK IAM: SASL/OAUTHBEARER over TLS, tokens signed for {} with the AWS credential chain",
            m.region
        );
    }
    let _ = writeln!(out, "storage: {}", plan.storage.url);
    for (k, v) in redacted(&plan.storage.options) {
        let _ = writeln!(out, "  {k} = {v}");
    }
    describe(plan, &[], &mut out);
    out
}

/// What the plan says, with no network: the catalog, the listener, the log, the pipeline's
/// limits and each table.
fn describe(plan: &Plan, catalog_found: &[String], out: &mut String) {
    let catalog = match &plan.catalog {
        CatalogPlan::None => "none (partitions are found by projection or a crawler)".to_string(),
        CatalogPlan::Glue(g) => format!(
            "AWS Glue database {} in {}{}{}",
            g.database,
            g.region,
            g.endpoint
                .as_ref()
                .map_or(String::new(), |e| format!(" at {e}")),
            if g.create_table {
                ", creating missing tables"
            } else {
                ""
            }
        ),
        CatalogPlan::Hive(h) => format!(
            "Hive Metastore thrift://{} database {}{}",
            h.address,
            h.database,
            if h.create_table {
                ", creating missing tables"
            } else {
                ""
            }
        ),
        CatalogPlan::Webhook(w) => format!(
            "webhook POST {}{}",
            w.url,
            if w.secret.is_some() { " (signed)" } else { "" }
        ),
    };
    let _ = writeln!(out, "catalog: {catalog}");
    for line in catalog_found {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "http: {}",
        match &plan.http_address {
            Some(a) => format!("/metrics, /healthz and /readyz on http://{a}"),
            None => "no listener (http.address = \"\")".into(),
        }
    );
    let _ = writeln!(
        out,
        "log: {:?}, a steady line every {}",
        crate::logging::format(Some(plan.log.format)),
        if plan.log.interval.is_zero() {
            "never".to_string()
        } else {
            format!("{:?}", plan.log.interval)
        }
    );
    let p = &plan.pipeline;
    let _ = writeln!(
        out,
        "pipeline: {} workers, max_buffered_bytes {}{}, part_size {}, drain_timeout {:?}, commit_interval {:?}, commit_timeout {:?}",
        p.workers,
        human_bytes(p.max_buffered_bytes),
        match (p.max_buffered_auto, crate::config::cgroup_memory_limit()) {
            (false, _) => String::new(),
            (true, Some(limit)) => format!(
                " (\"auto\": half of the container's memory limit, {})",
                human_bytes(limit)
            ),
            (true, None) => " (\"auto\": no container memory limit, the default)".into(),
        },
        human_bytes(p.part_size as u64),
        p.drain_timeout,
        p.commit_interval,
        p.commit_timeout
    );
    for t in &plan.tables {
        let _ = writeln!(out, "table {}:", t.name);
        let _ = writeln!(out, "  topics: {}", t.topics.join(", "));
        match &t.parquet {
            Some(pq) => {
                let _ = writeln!(
                    out,
                    "  format: parquet ({}, row groups ≤ {} rows / {} bytes, bloom filters: {})",
                    pq.props
                        .compression(&parquet::schema::types::ColumnPath::new(vec![])),
                    pq.props.max_row_group_row_count().unwrap_or(0),
                    pq.props.max_row_group_bytes().unwrap_or(0),
                    t.parquet_options
                        .as_ref()
                        .map_or(String::new(), |o| o.bloom_filters.join(", "))
                );
            }
            None if t.format == crate::config::Format::Parquet => {
                let _ = writeln!(
                    out,
                    "  format: parquet (the schema comes from the registry at start)"
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  format: {} (gzip level {})",
                    t.format.extension(),
                    t.compression_level
                );
            }
        }
        if let Some(schema) = &t.schema {
            let _ = writeln!(
                out,
                "  schema: {} ({} columns)",
                schema.origin,
                schema.arrow.fields().len()
            );
        }
        if let Some(reg) = &t.registry {
            let _ = writeln!(
                out,
                "  schema registry: {} subject {} (Confluent-framed records use their own schema id)",
                reg.client.url(),
                reg.subject
            );
        }
        let _ = writeln!(
            out,
            "  objects: {}/{}/{}/{{topic}}+{{partition}}+{{start offset:020}}.{}",
            plan.storage.url.as_str().trim_end_matches('/'),
            t.name,
            t.partition.source,
            t.format.extension()
        );
        let _ = writeln!(
            out,
            "  partition columns: {}",
            t.partition.partition_columns().join(", ")
        );
        let _ = writeln!(
            out,
            "  event time: {:?} in {:?}; missing → {:?}; future skew {:?}",
            t.timestamp, t.timezone, t.on_missing_timestamp, t.max_future_skew
        );
        let _ = writeln!(
            out,
            "  rotate: max_records {}, max_bytes {}, max_age {:?}",
            t.rotate.max_records,
            human_bytes(t.rotate.max_bytes),
            t.rotate.max_age
        );
    }
}
