//! Wires the stages together and runs them until shutdown: consumer thread → worker threads →
//! upload tasks → catalog → ledger → commit (on the consumer thread).

use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::catalog::Registrar;
use crate::commit::OffsetLedger;
use crate::config::Plan;
use crate::consume::{client_config, ConsumeError, Control, Ending, PollLoop, Shared, SinkContext};
use crate::error::Error;
use crate::fatal::Fatal;
use crate::memory::Budget;
use crate::stats::{Snapshot, Stats};
use crate::writer::WriterCtx;

/// Objects completed in the store at once (PUTs and multipart completions), all partitions
/// together: enough to keep a link busy, few enough to keep memory and connections bounded.
const UPLOAD_CONCURRENCY: usize = 64;

/// Batches queued per worker before the consumer thread waits.
const WORKER_QUEUE: usize = 16;

/// What a run did.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub stats: Snapshot,
    pub elapsed: Duration,
}

/// Runs the daemon until `control` says stop (or, with `exit_when_caught_up`, until every
/// assigned partition is consumed to its end), then drains: uploads and commits everything.
pub async fn run(
    mut plan: Plan,
    control: Arc<Control>,
    stats: Arc<Stats>,
) -> Result<Summary, Error> {
    let started = Instant::now();
    // The listener first: a port already taken is a configuration error, found at once.
    let listener = match &plan.http_address {
        Some(address) => {
            let l = crate::http::Listener::bind(address, stats.metrics.clone()).await?;
            tracing::info!(address = %l.local_addr().map_or_else(|| address.clone(), |a| a.to_string()), "serving /metrics, /healthz and /readyz");
            Some(tokio::spawn(l.serve()))
        }
        None => None,
    };
    let _listener = AbortOnDrop(listener);
    let _steady = AbortOnDrop(
        (!plan.log.interval.is_zero())
            .then(|| tokio::spawn(crate::logging::steady(stats.clone(), plan.log.interval))),
    );
    plan.resolve_schemas().await?;
    let lake = crate::storage::open(&plan.storage)?;
    // One catalog client for registering, sealing and compacting.
    let catalog_client = crate::catalog::open(&plan)?;
    let catalog = Arc::new(Registrar::new(
        catalog_client.clone(),
        crate::catalog::tables(&plan, &lake.url),
        stats.clone(),
    ));
    let fatal = Arc::new(Fatal::default());
    // librdkafka's prefetch is held apart from the files: reserved from the budget up front.
    let reserved = plan.kafka.prefetch.map_or(0, |p| p.total());
    let budget = Arc::new(Budget::new(
        plan.pipeline.max_buffered_bytes.saturating_sub(reserved),
    ));
    // The limit never changes: set once (the poll loop refreshes only what moves).
    stats.metrics.buffer_limit_bytes.set(budget.max());
    let claims = Arc::new(crate::claim::Claims::new(
        lake.store.clone(),
        lake.root.as_ref(),
    ));
    // Segment claims fence a writer that lost its partition only where the store refuses a
    // second create-only write: find out before writing anything.
    let found = match crate::claim::probe_create_only(&lake.store, lake.root.as_ref())
        .await
        .map_err(|source| Error::Store {
            url: lake.url.clone(),
            source,
        })? {
        crate::claim::CreateOnly::Enforced => None,
        crate::claim::CreateOnly::Ignored => Some("it accepted one"),
        crate::claim::CreateOnly::NotSupported => Some("its client has no create-only write"),
    };
    if let Some(found) = found {
        match plan.storage.unfenced {
            crate::config::Unfenced::Refuse => {
                return Err(Error::Unfenced {
                    url: lake.url.clone(),
                    found,
                })
            }
            crate::config::Unfenced::AtLeastOnce => {
                tracing::warn!(store = %lake.url, found, "the store does not refuse a second create-only write: running at least once (storage.unfenced = \"at_least_once\"); new files get keys of this process's own, so a writer that lost its partition may duplicate records but never replaces another's");
                claims.set_unfenced();
            }
        }
    }

    // The tables' completeness watermarks, for `/metrics`, and the seals that are due.
    let sealer = crate::seal::Sealer::new(
        &plan,
        lake.store.clone(),
        lake.root.as_ref(),
        catalog_client.clone(),
        crate::catalog::tables(&plan, &lake.url),
        stats.metrics.clone(),
    );
    let compactor =
        crate::compact::Compactor::new(&plan, &lake, catalog_client, stats.metrics.clone());
    let watermarks = Arc::new(crate::watermark::Current::default());
    let _give_back = AbortOnDrop(Some(tokio::spawn(crate::memory::give_back(
        plan.pipeline.max_buffered_bytes,
    ))));
    let mut upkeep = AbortOnDrop(Some(tokio::spawn(crate::upkeep::run(
        plan.clone(),
        claims.clone(),
        sealer,
        compactor.auto().then_some(compactor),
        watermarks.clone(),
        stats.metrics.clone(),
    ))));

    let ctx = Arc::new(WriterCtx {
        tables: Arc::new(plan.tables.clone()),
        store: lake.store.clone(),
        root: lake.root.to_string(),
        location_base: lake.url.clone(),
        rt: tokio::runtime::Handle::current(),
        ledger: Arc::new(Mutex::new(OffsetLedger::new())),
        catalog: catalog.clone(),
        budget: budget.clone(),
        workers: plan.pipeline.workers.max(1),
        stats: stats.clone(),
        fatal: fatal.clone(),
        part_size: plan.pipeline.part_size,
        dead_letter_prefix: plan.dead_letter_prefix.clone(),
        dead_letter_producer: match &plan.dead_letter_topic {
            None => None,
            Some(topic) => Some(Arc::new(crate::writer::DeadLetterProducer {
                producer: crate::consume::producer_config(&plan.kafka)
                    .create_with_context(
                        crate::kafka::KafkaAuth::new(&plan.kafka)
                            .map_err(|source| Error::DeadLetterProducer { source })?,
                    )
                    .map_err(|source| Error::DeadLetterProducer { source })?,
                topic: topic.clone(),
            })),
        },
        upload_slots: Arc::new(tokio::sync::Semaphore::new(UPLOAD_CONCURRENCY)),
        claims,
        reread: Arc::new(Mutex::new(Vec::new())),
        watermarks: watermarks.clone(),
    });

    let mut senders = Vec::new();
    let mut threads = Vec::new();
    for i in 0..plan.pipeline.workers.max(1) {
        let (tx, rx) = sync_channel(WORKER_QUEUE);
        senders.push(tx);
        let ctx = ctx.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("lakesink-worker-{i}"))
                .spawn(move || crate::worker::run(ctx, rx))
                .map_err(|source| Error::Thread {
                    what: "a worker thread",
                    source,
                })?,
        );
    }

    let shared = Arc::new(Shared::new(senders, &ctx, plan.pipeline.drain_timeout));
    let consumer: BaseConsumer<SinkContext> = client_config(&plan.kafka)
        .create_with_context(SinkContext {
            shared: shared.clone(),
            auth: crate::kafka::KafkaAuth::new(&plan.kafka).map_err(|source| {
                ConsumeError::Create {
                    brokers: plan.kafka.brokers.clone(),
                    source,
                }
            })?,
        })
        .map_err(|source| ConsumeError::Create {
            brokers: plan.kafka.brokers.clone(),
            source,
        })?;
    let topics = plan.topics();
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&refs)
        .map_err(|source| ConsumeError::Subscribe {
            topics: topics.clone(),
            source,
        })?;
    tracing::info!(topics = ?topics, group = %plan.kafka.group_id, workers = threads.len(), "consuming");

    let poll = PollLoop {
        consumer,
        shared,
        control,
        budget,
        catalog,
        fatal: fatal.clone(),
        commit_interval: plan.pipeline.commit_interval,
        commit_timeout: plan.pipeline.commit_timeout,
        commit_failing_since: std::cell::Cell::new(None),
        gap_asked: std::cell::RefCell::default(),
        drain_timeout: plan.pipeline.drain_timeout,
    };
    // `run` drops the consumer when it returns: it leaves the group (its revocation callback
    // still reaches the workers), then the workers' queues close and they exit.
    let ending = tokio::task::spawn_blocking(move || poll.run())
        .await
        .map_err(|source| Error::Task {
            what: "the consumer thread",
            source,
        })?;
    drop(ctx);
    for t in threads {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    // The upkeep ends with the run, its Kafka client closed before the run returns (a caller
    // may stop the broker next: the embedded one of `lakesink demo`).
    if let Some(h) = upkeep.0.take() {
        h.abort();
        let _ = h.await;
    }

    match ending {
        Ending::Drained => Ok(Summary {
            stats: stats.snapshot(),
            elapsed: started.elapsed(),
        }),
        Ending::DrainTimedOut(pending) => Err(Error::DrainTimeout {
            secs: plan.pipeline.drain_timeout.as_secs(),
            pending,
        }),
        Ending::Failed => Err(fatal
            .take()
            .map_or(Error::FatalWithoutCause, Error::from_fatal)),
    }
}

/// Stops the operations listener when the run ends, however it ends.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}
