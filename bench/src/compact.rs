//! The compaction benchmark: a lake Lakesink wrote (a local directory) sealed whole from its
//! claims, then compacted (gzip members concatenated, a catalog switch per partition, the
//! replaced files deleted), in this process. Prints the files per partition before and after,
//! and writes the figures to a JSON file for the main benchmark's table.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use lakesink::catalog::memory::MemoryCatalog;
use lakesink::catalog::{Catalog, NewPartition};
use lakesink::claim::Claims;
use lakesink::commit::Tp;
use lakesink::compact::{Compactor, Options};
use lakesink::seal::Sealer;
use lakesink::watermark::CommittedFile;

/// Seals and compacts table `cloudtrail` of topic `topic` in the lake at `dir`; the figures go
/// to `report` as JSON.
pub fn run(dir: &Path, topic: &str, report: &Path) {
    let plan = lakesink::Plan::from_toml(
        &format!(
            r#"[kafka]
brokers = "unused:9092"
group_id = "bench"
[storage]
url = "file://{dir}"
[catalog]
kind = "hive"
uri = "thrift://unused:9083"
database = "bench"
[[tables]]
name = "cloudtrail"
topics = ["{topic}"]
partition_by = "date={{event_time:%Y-%m-%d}}/hour={{event_time:%H}}"
timestamp = {{ field = "eventTime" }}
seal = true
[tables.compact]
min_files = 2
target_size = "256MiB"
grace = "0s"
"#,
            dir = dir.display()
        ),
        "bench",
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let lake = lakesink::storage::open(&plan.storage).unwrap();
        let metrics = Arc::new(lakesink::metrics::Metrics::default());
        let catalog = MemoryCatalog::default();
        let tables = lakesink::catalog::tables(&plan, &lake.url);
        let mut ct = tables[0].clone();
        ct.create = true;
        catalog.load(&ct).await.unwrap();

        // Every committed file, from the claims (the daemon's sealer reads the same).
        let claims = Claims::new(lake.store.clone(), lake.root.as_ref());
        let mut files = Vec::new();
        for p in claims.partitions(topic).await.unwrap() {
            let tp = Tp::new(topic, p);
            for (generation, list) in claims.all(&tp).await.unwrap() {
                for c in list {
                    files.extend(c.files.iter().filter(|f| f.table.is_some()).map(|f| {
                        CommittedFile {
                            tp: tp.clone(),
                            generation,
                            start: c.start,
                            end: c.end,
                            file: f.clone(),
                        }
                    }));
                }
            }
        }
        let mut per_path: BTreeMap<String, (usize, u64)> = BTreeMap::new();
        for f in &files {
            let e = per_path.entry(f.file.path.clone().unwrap()).or_default();
            e.0 += 1;
            e.1 += f.file.bytes;
        }
        let parts: Vec<NewPartition> = per_path
            .keys()
            .map(|p| NewPartition {
                table: "cloudtrail".into(),
                path: p.clone(),
                location: String::new(),
                files: Vec::new(),
            })
            .collect();
        let refs: Vec<&NewPartition> = parts.iter().collect();
        catalog.register(&ct, &refs).await.unwrap();
        let mut sealer = Sealer::new(
            &plan,
            lake.store.clone(),
            lake.root.as_ref(),
            Arc::new(catalog.clone()),
            tables,
            metrics.clone(),
        );
        sealer.committed(files);
        let sealed = sealer
            .seal_due(&[("cloudtrail".into(), Some(i64::MAX))])
            .await
            .unwrap();
        let compactor = Compactor::new(&plan, &lake, Arc::new(catalog.clone()), metrics);

        let (cpu0, wall0) = (crate::measure::process_cpu_self(), std::time::Instant::now());
        let done = compactor.run(&Options::default()).await.unwrap();
        let (cpu, wall) = (
            crate::measure::process_cpu_self() - cpu0,
            wall0.elapsed().as_secs_f64(),
        );
        let compacted: Vec<_> = done.iter().filter(|d| d.action == "compacted").collect();
        let bytes: u64 = compacted.iter().map(|d| d.bytes).sum();
        let before: usize = compacted.iter().map(|d| d.files_before).sum();
        let after: usize = compacted.iter().map(|d| d.files_after).sum();
        let n = compacted.len().max(1);
        let figures = serde_json::json!({
            "partitions": sealed.len(),
            "compacted": compacted.len(),
            "files_before": before,
            "files_after": after,
            "files_per_partition_before": before as f64 / n as f64,
            "files_per_partition_after": after as f64 / n as f64,
            "bytes": bytes,
            "cpu": cpu,
            "wall": wall,
            "cpu_per_gb": cpu / (bytes as f64 / 1e9),
        });
        eprintln!(
            "compaction: {} partitions, files {before} → {after} ({:.1} → {:.1} per partition), {:.1} MB in {cpu:.2} CPU-s ({:.2} CPU-s/GB), {wall:.2} s",
            compacted.len(),
            before as f64 / n as f64,
            after as f64 / n as f64,
            bytes as f64 / 1e6,
            cpu / (bytes as f64 / 1e9),
        );
        std::fs::write(report, serde_json::to_vec_pretty(&figures).unwrap()).unwrap();
    });
}
