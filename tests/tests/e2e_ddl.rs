//! `lakesink ddl` checked by running it: the demo lands its two tables (gzip NDJSON read as
//! whole lines, and Parquet) in a local lake; the Hive and Spark dialects' statements are
//! executed by Spark SQL against the Hive Metastore and the tables they define are queried;
//! the Athena and Trino statements are parsed by sqlglot for their dialects.

use std::path::Path;
use std::process::Command;

use lakesink_e2e::{report, Testbed};
use serde_json::Value;

const RECORDS: u64 = 20_000;

fn ddl(tb: &Testbed, config: &Path, dialect: &str, database: &str) -> String {
    let out = Command::new(&tb.bin)
        .arg("ddl")
        .arg("--config")
        .arg(config)
        .args(["--dialect", dialect, "--database", database])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lakesink ddl --dialect {dialect}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The statements of a script, without comment lines and the closing `;`.
fn statements(sql: &str) -> Vec<String> {
    let text: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .map(|l| format!("{l}\n"))
        .collect();
    text.split(";\n")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn spark(tb: &Testbed, dir: &Path, stmts: &[String]) -> Vec<Vec<Value>> {
    let file = dir.join(format!("{}.json", Testbed::unique("spark")));
    std::fs::write(&file, serde_json::to_vec(stmts).unwrap()).unwrap();
    serde_json::from_str(&tb.python("spark_sql.py", &[file.to_str().unwrap()])).unwrap()
}

#[test]
fn ddl_of_the_demo_tables_runs_in_spark_on_the_hive_metastore_and_parses_for_athena_and_trino() {
    let tb = Testbed::from_env();
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let status = Command::new(&tb.bin)
        .args(["demo", "--records", &RECORDS.to_string(), "--dir"])
        .arg(&lake)
        .status()
        .unwrap();
    assert!(status.success(), "lakesink demo");
    let config = lake.join("lakesink.toml");

    // Hive dialect, executed by Spark's Hive client against the metastore.
    let hive_db = Testbed::unique("ddl_hive").replace('-', "_");
    let hive = ddl(&tb, &config, "hive", &hive_db);
    let mut stmts = vec![format!("CREATE DATABASE {hive_db}")];
    stmts.extend(statements(&hive));
    assert_eq!(stmts.len(), 3, "{hive}");
    stmts.extend([
        format!("MSCK REPAIR TABLE {hive_db}.cloudtrail"),
        format!("MSCK REPAIR TABLE {hive_db}.cloudtrail_parquet"),
        format!("SELECT count(*) AS n FROM {hive_db}.cloudtrail"),
        format!(
            "SELECT count(*) AS n, count(DISTINCT eventID) AS ids, \
             sum(CASE WHEN date_format(eventTime, 'yyyy-MM-dd') = date AND date_format(eventTime, 'HH') = hour THEN 1 ELSE 0 END) AS placed, \
             count(DISTINCT userIdentity.userName) AS users, sum(size(resources)) AS resources \
             FROM {hive_db}.cloudtrail_parquet"
        ),
        format!(
            "SELECT count(*) AS n FROM {hive_db}.cloudtrail WHERE get_json_object(line, '$.eventTime') LIKE '2024-%'"
        ),
    ]);
    let out = spark(&tb, dir.path(), &stmts);
    let last = out.len() - 1;
    assert_eq!(
        out[last - 2][0]["n"],
        RECORDS,
        "json lines: {:?}",
        out[last - 2]
    );
    let p = &out[last - 1][0];
    assert_eq!(p["n"], RECORDS, "{p}");
    assert_eq!(p["ids"], RECORDS, "{p}");
    assert_eq!(
        p["placed"], RECORDS,
        "eventTime as a timestamp in its partition: {p}"
    );
    assert!(p["users"].as_u64().unwrap() > 10, "{p}");
    assert!(p["resources"].as_u64().unwrap() >= RECORDS, "{p}");
    assert_eq!(
        out[last][0]["n"], RECORDS,
        "each line whole: {:?}",
        out[last]
    );
    // The metastore holds what the statement declared (read with an independent client).
    let t = tb.hive_table(&hive_db, "cloudtrail_parquet");
    assert!(t.to_string().contains("ParquetHiveSerDe"), "{t}");
    assert_eq!(
        tb.hive_partitions(&hive_db, "cloudtrail_parquet").len(),
        tb.hive_partitions(&hive_db, "cloudtrail").len()
    );

    // Spark dialect: datasource tables over the same files.
    let spark_db = Testbed::unique("ddl_spark").replace('-', "_");
    let sparks = ddl(&tb, &config, "spark", &spark_db);
    let mut stmts = vec![format!("CREATE DATABASE {spark_db}")];
    stmts.extend(statements(&sparks));
    assert_eq!(stmts.len(), 3, "{sparks}");
    stmts.extend([
        format!("ALTER TABLE {spark_db}.cloudtrail RECOVER PARTITIONS"),
        format!("ALTER TABLE {spark_db}.cloudtrail_parquet RECOVER PARTITIONS"),
        format!("SELECT count(*) AS n FROM {spark_db}.cloudtrail"),
        format!(
            "SELECT count(*) AS n, count(DISTINCT eventID) AS ids, max(eventTime) AS latest FROM {spark_db}.cloudtrail_parquet"
        ),
    ]);
    let out = spark(&tb, dir.path(), &stmts);
    let last = out.len() - 1;
    assert_eq!(out[last - 1][0]["n"], RECORDS, "{:?}", out[last - 1]);
    assert_eq!(out[last][0]["n"], RECORDS, "{:?}", out[last]);
    assert_eq!(out[last][0]["ids"], RECORDS, "{:?}", out[last]);

    // Athena and Trino: parsed by a SQL parser for the dialect.
    for dialect in ["athena", "trino"] {
        let sql = ddl(&tb, &config, dialect, "lake");
        let file = dir.path().join(format!("{dialect}.sql"));
        std::fs::write(&file, &sql).unwrap();
        let parsed: Vec<Value> =
            serde_json::from_str(&tb.python("sql_parse.py", &[dialect, file.to_str().unwrap()]))
                .unwrap();
        let tables: Vec<&str> = parsed
            .iter()
            .map(|t| t["table"].as_str().unwrap())
            .collect();
        assert_eq!(
            tables,
            ["cloudtrail", "cloudtrail_parquet"],
            "{dialect}: {sql}"
        );
        let cols = parsed[1]["columns"].as_array().unwrap();
        assert!(cols.iter().any(|c| c == "userIdentity"), "{dialect}: {sql}");
        if dialect == "athena" {
            let props = &parsed[1]["properties"];
            for key in [
                "projection.enabled",
                "projection.date.type",
                "projection.date.format",
                "projection.date.range",
                "projection.date.interval.unit",
                "projection.hour.type",
                "storage.location.template",
            ] {
                assert!(props.get(key).is_some(), "athena: {key} in {props}");
            }
        } else {
            assert_eq!(
                cols.last().unwrap(),
                "hour",
                "trino: partition columns last: {sql}"
            );
        }
    }
    report(&format!(
        "e2e ddl: demo lake of {RECORDS} events; hive and spark dialects executed by Spark 3.5.6 on the Hive Metastore and queried (every record, eventTime in its partition); athena and trino parsed by sqlglot"
    ));
}
