//! The `lakesink` command line: parses arguments and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "lakesink",
    version,
    about = "Lands Kafka topics in object storage as a hive-partitioned data lake"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (SIGTERM / Ctrl-C drain: upload, commit, exit 0).
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Exit once every assigned partition is consumed to its end (backfills, benchmarks).
        #[arg(long)]
        until_caught_up: bool,
    },
    /// Validate the config, reach the broker, the store and the catalog, print the resolved
    /// plan (secrets redacted).
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Only parse and plan: reach nothing (for CI, image builds, config reviews).
        #[arg(long)]
        offline: bool,
    },
    /// Where each table stands: per Kafka partition the committed offset, the high watermark
    /// and the lag, the last segment in the lake, the catalog's partitions (daemon running or
    /// not).
    Status {
        #[arg(long, short)]
        config: PathBuf,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Prove from the lake that nothing is missing: the claims cover every committed offset,
    /// every object they list is in the store with its size (--deep: its checksum and records),
    /// no object is in a table that no claim lists. Exit 0 only when nothing is wrong (1 when
    /// something is: each finding is printed).
    Verify {
        #[arg(long, short)]
        config: PathBuf,
        /// Only this table.
        #[arg(long)]
        table: Option<String>,
        /// Only objects with event times at or after this (RFC 3339, or 2024-01-02T03).
        #[arg(long, value_parser = lakesink::verify::parse_time)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// Only objects with event times before this.
        #[arg(long, value_parser = lakesink::verify::parse_time)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        /// Read every object back: its CRC-32 and its record count.
        #[arg(long)]
        deep: bool,
        /// Read the records Kafka still holds at committed offsets and compare them with the
        /// lake, record by record.
        #[arg(long)]
        against_kafka: bool,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Compact sealed partitions into few large files (tables with [tables.compact]): one pass,
    /// for a cron job; it also finishes compactions a crash interrupted and deletes replaced
    /// files once their grace has passed.
    Compact {
        #[arg(long, short)]
        config: PathBuf,
        /// Only this table.
        #[arg(long)]
        table: Option<String>,
        /// Only partitions whose time span ends after this (RFC 3339, or 2024-01-02T03).
        #[arg(long, value_parser = lakesink::verify::parse_time)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// Only partitions whose time span ends at or before this.
        #[arg(long, value_parser = lakesink::verify::parse_time)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        /// Say what would be compacted; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the CREATE TABLE statement of each table for a query engine.
    Ddl {
        #[arg(long, short)]
        config: PathBuf,
        /// Only this table.
        #[arg(long)]
        table: Option<String>,
        /// The database the statements name (default: the catalog's, else `default`).
        #[arg(long)]
        database: Option<String>,
        /// athena (with partition projection), trino, hive or spark.
        #[arg(long, default_value = "athena")]
        dialect: lakesink::ddl::Dialect,
    },
    /// Keep producing CloudTrail-shaped events of the current time to a topic (for trying a
    /// deployment: docker compose, a sidecar).
    Generate {
        #[arg(long)]
        brokers: String,
        #[arg(long, default_value = "cloudtrail")]
        topic: String,
        /// Events per second.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// Stop after this many events (default: until SIGTERM / Ctrl-C).
        #[arg(long)]
        records: Option<u64>,
        /// Every this many events, send one that is not JSON (to watch dead letters).
        #[arg(long)]
        bad_every: Option<u64>,
    },
    /// Run the real pipeline on an embedded broker into a local directory, then verify it.
    Demo {
        /// Where the lake goes.
        #[arg(long, default_value = "lakesink-demo")]
        dir: PathBuf,
        /// How many events to produce.
        #[arg(long, default_value_t = 300_000)]
        records: u64,
        /// Kafka partitions of the demo topic.
        #[arg(long, default_value_t = 6)]
        partitions: i32,
    },
}

fn main() -> ExitCode {
    // First, before any thread allocates (see the function).
    let malloc_tuned = lakesink::memory::tune_allocator();
    // `--version`: the crate's version, the git revision and the librdkafka linked in, with
    // whether it can do OAUTHBEARER/OIDC (only when libcurl was there to build it with).
    let (_, librdkafka) = rdkafka::util::get_rdkafka_version();
    let oidc = rdkafka::ClientConfig::new()
        .create_native_config()
        .and_then(|c| c.get("builtin.features"))
        .is_ok_and(|f| f.split(',').any(|f| f == "oidc"));
    let version: &'static str = Box::leak(
        format!(
            "{} (git {}, librdkafka {librdkafka}{})",
            env!("CARGO_PKG_VERSION"),
            env!("LAKESINK_GIT_REV"),
            if oidc { " with OIDC" } else { " without OIDC" }
        )
        .into_boxed_str(),
    );
    let cli = match Cli::command()
        .version(version)
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // The config is read before the logger starts: it says the log's format. Its error, if
    // any, goes through that logger like every other final error.
    let loaded = cli.command.config().map(lakesink::Plan::load);
    let configured = loaded
        .as_ref()
        .and_then(|r| r.as_ref().ok())
        .map(|p| p.log.format);
    lakesink::logging::init(
        lakesink::logging::format(configured),
        match cli.command {
            Command::Demo { .. } => "warn",
            _ => "info",
        },
    );
    tracing::debug!(
        ?malloc_tuned,
        "glibc malloc tuned (LAKESINK_MALLOC_TUNING=off keeps its defaults)"
    );
    let plan = match loaded.transpose() {
        Ok(plan) => plan,
        Err(e) => return failed(&lakesink::Error::from(e).into()),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(lakesink::memory::BLOCKING_THREADS)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return failed(&anyhow::anyhow!("starting the runtime: {e}")),
    };
    match rt.block_on(dispatch(cli.command, plan)) {
        Ok(code) => code,
        Err(e) => failed(&e),
    }
}

/// Logs the final error and picks the exit code: `lakesink::error::ExitKind` for the
/// library's errors, 1 for anything else.
fn failed(e: &anyhow::Error) -> ExitCode {
    let kind = e.downcast_ref::<lakesink::Error>().map_or(
        lakesink::error::ExitKind::Failure,
        lakesink::Error::exit_kind,
    );
    tracing::error!(exit_code = kind.code(), "{}", chain(e));
    ExitCode::from(kind.code())
}

/// The error and its causes, joined by ": ", each cause once: an error whose message already
/// quotes its source (`encoding {key}: {source}`) is not followed by that source again.
fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

impl Command {
    fn config(&self) -> Option<&std::path::Path> {
        match self {
            Command::Run { config, .. }
            | Command::Check { config, .. }
            | Command::Status { config, .. }
            | Command::Verify { config, .. }
            | Command::Compact { config, .. }
            | Command::Ddl { config, .. } => Some(config),
            Command::Demo { .. } | Command::Generate { .. } => None,
        }
    }
}

async fn dispatch(command: Command, plan: Option<lakesink::Plan>) -> anyhow::Result<ExitCode> {
    let plan = move || plan.expect("commands with --config have a plan");
    match command {
        Command::Run {
            until_caught_up, ..
        } => {
            let plan = plan();
            let control = Arc::new(lakesink::Control::default());
            control
                .exit_when_caught_up
                .store(until_caught_up, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(stop_on_signal(control.clone()));
            let stats = Arc::new(lakesink::Stats::default());
            let progress = until_caught_up && std::io::IsTerminal::is_terminal(&std::io::stderr());
            if progress {
                tokio::spawn(show_progress(stats.clone()));
            }
            let result = lakesink::run(plan, control, stats).await;
            if progress {
                eprintln!();
            }
            let summary = result?;
            let s = summary.stats;
            tracing::info!(
                consumed = s.records_in,
                records = s.records_written,
                files = s.files_written,
                bytes = s.bytes_written,
                seconds = summary.elapsed.as_secs_f64(),
                dead_letters = s.dead_letters,
                partitions_registered = s.partitions_registered,
                catalog_ms = s.catalog_micros / 1000,
                catalog_retries = s.catalog_retries,
                claims_refused = s.claims_refused,
                commit_failures = s.commit_failures,
                peak_rss = lakesink::memory::resident().map_or(0, |r| r.peak),
                "drained: everything consumed is uploaded and committed"
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Ddl {
            table,
            database,
            dialect,
            ..
        } => {
            let mut plan = plan();
            plan.resolve_schemas().await?;
            let sql =
                lakesink::ddl::for_plan(&plan, table.as_deref(), database.as_deref(), dialect)?;
            print!("{sql}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json, .. } => {
            let mut plan = plan();
            plan.resolve_schemas().await?;
            let status = lakesink::status::status(&plan).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", status.render());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify {
            table,
            from,
            to,
            deep,
            against_kafka,
            json,
            ..
        } => {
            let options = lakesink::verify::Options {
                table,
                from,
                to,
                deep,
                against_kafka,
            };
            let report = lakesink::verify::verify(&plan(), &options)
                .await
                .map_err(lakesink::Error::from)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.render());
            }
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Compact {
            table,
            from,
            to,
            dry_run,
            json,
            ..
        } => {
            let mut plan = plan();
            plan.resolve_schemas().await?;
            let options = lakesink::compact::Options {
                table,
                from,
                to,
                dry_run,
            };
            let done = lakesink::compact::run(&plan, &options)
                .await
                .map_err(lakesink::Error::from)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&done)?);
            } else {
                for d in &done {
                    println!(
                        "{} {}/{}: {} file(s) → {}, {} records, {} bytes",
                        d.action,
                        d.table,
                        d.path,
                        d.files_before,
                        d.files_after,
                        d.records,
                        d.bytes
                    );
                }
                println!("compact: {} action(s)", done.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { offline: true, .. } => {
            print!("{}", lakesink::check::offline(&plan()));
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { .. } => {
            let mut plan = plan();
            plan.resolve_schemas().await?;
            print!("{}", lakesink::check::check(&plan).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate {
            brokers,
            topic,
            rate,
            records,
            bad_every,
        } => {
            let live = lakesink::generator::Live {
                brokers,
                topic,
                rate: rate.max(1),
                records,
                bad_every,
            };
            let control = Arc::new(lakesink::Control::default());
            tokio::spawn(stop_on_signal(control.clone()));
            tracing::info!(topic = %live.topic, rate = live.rate, "producing events");
            let sent = tokio::task::spawn_blocking(move || {
                lakesink::generator::produce_live(&live, &control.shutdown)
            })
            .await??;
            tracing::info!(sent, "stopped");
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            dir,
            records,
            partitions,
        } => {
            eprintln!("lakesink demo: producing {records} events into an embedded broker and landing them in {}/ …", dir.display());
            let report = lakesink::demo::run(lakesink::demo::DemoOptions {
                dir,
                records,
                partitions,
            })
            .await
            .map_err(|e| match e {
                // The pipeline's own errors keep their exit codes.
                lakesink::demo::DemoError::Pipeline(e) => anyhow::Error::from(*e),
                e => e.into(),
            })?;
            print!("{}", report.render());
            Ok(if report.is_exact() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// A progress line on the terminal for backfills: records, throughput, remaining lag.
async fn show_progress(stats: Arc<lakesink::Stats>) {
    use std::io::Write;
    let mut last = stats.snapshot();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = stats.snapshot();
        eprint!("\r\x1b[2K{}", now.progress_line(&last, 1.0));
        let _ = std::io::stderr().flush();
        last = now;
    }
}

/// SIGTERM and Ctrl-C start a drain; a second one exits at once without committing more.
async fn stop_on_signal(control: Arc<lakesink::Control>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        for round in 0..2 {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            if round == 0 {
                tracing::info!("signal received: draining (send it again to exit at once)");
                control.stop();
            } else {
                eprintln!("second signal: exiting without committing what is not uploaded");
                std::process::exit(130);
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        control.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[derive(Debug, thiserror::Error)]
    #[error("encoding k: {source}")]
    struct Quoting {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn each_cause_is_printed_once() {
        let disk = || std::io::Error::other("disk full");
        let quoting = anyhow::Error::new(Quoting { source: disk() });
        assert_eq!(chain(&quoting), "encoding k: disk full");
        let silent = anyhow::Error::new(disk()).context("writing x");
        assert_eq!(chain(&silent), "writing x: disk full");
        let both = anyhow::Error::new(Quoting { source: disk() }).context("segment 3");
        assert_eq!(chain(&both), "segment 3: encoding k: disk full");
    }
}
