//! The results in Markdown: the ceilings once, then each shape's table with its ratios, and a
//! summary of both shapes side by side.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::measure::Measured;

/// The unavoidable work of a Lakesink run, whose ceiling it is measured against.
#[derive(Debug, Clone, Copy)]
pub enum Work {
    Gzip(u32),
    Parquet,
}

pub struct Row {
    pub name: String,
    pub m: Measured,
    pub out_mb: Option<f64>,
    pub ceiling: Option<Work>,
}

impl Row {
    /// A ceiling measured on this thread: its CPU time is its wall time.
    pub fn on_this_thread(name: String, cpu: f64, out_bytes: Option<u64>) -> Row {
        Row {
            name,
            m: Measured {
                wall: cpu,
                cpu,
                peak_rss_mb: 0.0,
                broker_cpu: None,
            },
            out_mb: out_bytes.map(|b| b as f64 / 1e6),
            ceiling: None,
        }
    }
}

/// The one-stream ceilings, CPU-s per GB, measured once on the events both shapes hold.
pub struct Ceilings {
    pub event_time: f64,
    pub gzip: BTreeMap<u32, f64>,
    pub parquet: f64,
}

/// What one shape measured.
pub struct ShapeReport {
    pub title: &'static str,
    pub key: &'static str,
    pub partitions: i32,
    /// The null consumer, the Lakesink runs, then the references in this shape's files.
    pub rows: Vec<Row>,
    /// Consume-and-discard CPU-s per GB (the null consumer's).
    pub consume: f64,
    /// The broker's CPU-s per GB while the null consumer read.
    pub broker: f64,
    /// The encoders alone in the files this shape makes Lakesink write, CPU-s per GB.
    pub files_parquet: f64,
    pub files_gzip: BTreeMap<u32, f64>,
    pub files: usize,
    /// (how, the process measured, figures) of each compaction.
    pub compactions: Vec<(&'static str, Measured, serde_json::Value)>,
}

impl ShapeReport {
    /// The ceiling of a run of this shape doing `work`, CPU-s per GB.
    fn ceiling(&self, c: &Ceilings, work: Work) -> f64 {
        self.consume
            + match work {
                Work::Parquet => c.parquet,
                Work::Gzip(level) => c.event_time + c.gzip[&level],
            }
    }

    /// (CPU ratio, throughput ratio) of a run doing `work`.
    fn ratios(&self, c: &Ceilings, work: Work, m: &Measured, gb: f64, cores: usize) -> (f64, f64) {
        let ceiling = self.ceiling(c, work);
        let ceiling_mb_s = cores as f64 / (ceiling + self.broker) * 1e3;
        (ceiling / (m.cpu / gb), gb * 1e3 / m.wall / ceiling_mb_s)
    }
}

pub struct Report<'a> {
    pub records: u64,
    pub gb: f64,
    pub cores: usize,
    pub command: String,
    pub repeat: usize,
    pub ceilings: Ceilings,
    /// The ceiling rows, as measured.
    pub ceiling_rows: Vec<Row>,
    pub shapes: &'a [ShapeReport],
}

const HEADER: &str = "| run | records | input MB | wall s | CPU s | CPU-s/GB | MB/s | records/s | peak RSS MB | output MB | broker CPU-s/GB | ceiling CPU-s/GB | CPU ratio | throughput ratio |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|";

impl Report<'_> {
    fn row(&self, md: &mut String, r: &Row, shape: Option<&ShapeReport>) {
        let gb = self.gb;
        let mb = gb * 1e3;
        let (ceiling, cpu_ratio, tput_ratio) = match (r.ceiling, shape) {
            (Some(w), Some(s)) => {
                let (c, t) = s.ratios(&self.ceilings, w, &r.m, gb, self.cores);
                (
                    format!("{:.2}", s.ceiling(&self.ceilings, w)),
                    format!("{:.0} %", c * 100.0),
                    format!("{:.0} %", t * 100.0),
                )
            }
            _ => Default::default(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {:.2} | {:.2} | {:.2} | {:.1} | {:.0} | {} | {} | {} | {ceiling} | {cpu_ratio} | {tput_ratio} |",
            r.name,
            self.records,
            mb,
            r.m.wall,
            r.m.cpu,
            r.m.cpu / gb,
            mb / r.m.wall,
            self.records as f64 / r.m.wall,
            if r.m.peak_rss_mb > 0.0 { format!("{:.0}", r.m.peak_rss_mb) } else { String::new() },
            r.out_mb.map(|x| format!("{x:.1}")).unwrap_or_default(),
            r.m.broker_cpu.map(|x| format!("{:.2}", x / gb)).unwrap_or_default(),
        );
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let c = &self.ceilings;
        let _ = writeln!(md, "# Lakesink benchmark\n");
        let _ = writeln!(
            md,
            "{} CloudTrail-shaped events (4 hours of event time, 5 % of them 10–90 minutes late), {:.1} MB of JSON, in {} shapes; mock broker in its own process; {} cores.\n",
            self.records,
            self.gb * 1e3,
            self.shapes.len(),
            self.cores
        );
        let _ = writeln!(
            md,
            "Command: `scripts/bench.sh {}`. Each row is the pass (of {}) with the median CPU time.\n",
            self.command, self.repeat
        );

        // Summary first: what the issue asks about.
        let _ = writeln!(md, "## Summary\n");
        let _ = writeln!(
            md,
            "| shape | run | MB/s | CPU-s/GB | peak RSS MB | CPU ratio | throughput ratio |\n|---|---|---|---|---|---|---|"
        );
        for s in self.shapes {
            for r in s.rows.iter().filter(|r| r.ceiling.is_some()) {
                let w = r.ceiling.unwrap();
                let (cr, tr) = s.ratios(c, w, &r.m, self.gb, self.cores);
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.1} | {:.2} | {:.0} | {:.0} % | {:.0} % |",
                    s.key,
                    r.name,
                    self.gb * 1e3 / r.m.wall,
                    r.m.cpu / self.gb,
                    r.m.peak_rss_mb,
                    cr * 100.0,
                    tr * 100.0
                );
            }
        }

        let _ = writeln!(
            md,
            "\n## Ceilings: the same events in one stream, one thread\n"
        );
        let _ = writeln!(md, "{HEADER}");
        for r in &self.ceiling_rows {
            self.row(&mut md, r, None);
        }
        let _ = writeln!(
            md,
            "\nCeiling of a run = the shape's consume-and-discard CPU-s/GB (its null consumer) + finding and parsing eventTime + gzip CPU-s/GB at the run's level \
             (or consume-and-discard + JSON → Arrow → Parquet CPU-s/GB for Parquet runs). \
             CPU ratio = ceiling ÷ Lakesink CPU-s/GB. Throughput ratio = Lakesink MB/s ÷ ({} cores ÷ (ceiling CPU-s/GB + \
             the broker's CPU-s/GB while the null consumer read)): the broker runs on the same cores, and serving the bytes costs it about \
             what it cost the null consumer (its CPU in each run is in the table). SeaweedFS, in the S3 runs, also shares the cores; it is not counted.",
            self.cores
        );

        for s in self.shapes {
            let _ = writeln!(md, "\n## {}\n", s.title);
            let _ = writeln!(
                md,
                "{} Kafka partitions; Lakesink writes {} files from them (one per Kafka partition and event hour).\n",
                s.partitions, s.files
            );
            let _ = writeln!(md, "{HEADER}");
            for r in &s.rows {
                self.row(&mut md, r, Some(s));
            }
            if let Some(pq) = s
                .rows
                .iter()
                .find(|r| matches!(r.ceiling, Some(Work::Parquet)) && r.name.contains("local dir"))
            {
                let _ = writeln!(
                    md,
                    "\nThe Parquet work alone, in the files Lakesink writes ({:.2} CPU-s/GB), \
                     is {:.2}× the one-file ceiling. Against it plus consume-and-discard, Lakesink's Parquet run is at {:.0} %.",
                    s.files_parquet,
                    s.files_parquet / c.parquet,
                    (s.consume + s.files_parquet) / (pq.m.cpu / self.gb) * 100.0
                );
            }
            for r in s.rows.iter().filter(|r| r.name.contains("local dir")) {
                let Some(Work::Gzip(level)) = r.ceiling else {
                    continue;
                };
                let files_cpu = s.files_gzip[&level];
                let _ = writeln!(
                    md,
                    "\ngzip level {level} of the same rows, in the files Lakesink writes ({files_cpu:.2} CPU-s/GB), \
                     is {:.2}× one stream. Against it plus consume-and-discard and eventTime, Lakesink's \
                     json.gz level {level} run is at {:.0} %.",
                    files_cpu / c.gzip[&level],
                    (s.consume + c.event_time + files_cpu) / (r.m.cpu / self.gb) * 100.0
                );
            }
            for (how, cm, v) in &s.compactions {
                let (name, f) = (&v["name"], &v["figures"]);
                let _ = writeln!(
                    md,
                    "\nCompaction of the {} lake (`[tables.compact]`, target 256 MiB; sealed first from the claims, then {how} into one object per partition, the catalog switched, the replaced files deleted; local disk, a process of its own): {} partitions, files per partition {:.1} → {:.1} ({} → {} files), {:.1} MB compacted in {:.2} CPU-s and {:.2} s: **{:.2} CPU-s per GB compacted**; the whole process (reading the claims and sealing first) {:.2} CPU-s, peak RSS {:.0} MB.",
                    name.as_str().unwrap_or(""),
                    f["compacted"],
                    f["files_per_partition_before"].as_f64().unwrap_or(0.0),
                    f["files_per_partition_after"].as_f64().unwrap_or(0.0),
                    f["files_before"],
                    f["files_after"],
                    f["bytes"].as_f64().unwrap_or(0.0) / 1e6,
                    f["cpu"].as_f64().unwrap_or(0.0),
                    f["wall"].as_f64().unwrap_or(0.0),
                    f["cpu_per_gb"].as_f64().unwrap_or(0.0),
                    cm.cpu,
                    cm.peak_rss_mb,
                );
            }
        }
        md
    }
}
