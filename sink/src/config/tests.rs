//! The config file's shape, defaults and mistakes.

use super::*;

const MINIMAL: &str = r#"
[kafka]
brokers = "127.0.0.1:9092"
group_id = "g"
[kafka.properties]
"sasl.password" = "hunter2"
[storage]
url = "s3://bucket/prefix"
[storage.options]
endpoint = "http://127.0.0.1:8333"
aws_secret_access_key = "topsecret"
[[tables]]
name = "cloudtrail"
topics = ["cloudtrail"]
partition_by = "date={event_time:%Y-%m-%d}/hour={event_time:%H}/region={field:awsRegion}"
timestamp = { field = "eventTime" }
[tables.rotate]
max_records = 1000
max_bytes = "64MiB"
max_age = "30s"
"#;

#[test]
fn parses_the_documented_shape() {
    let plan = Plan::from_toml(MINIMAL, "t.toml").unwrap();
    let t = &plan.tables[0];
    assert_eq!(t.rotate.max_records, 1000);
    assert_eq!(t.rotate.max_bytes, 64 * 1024 * 1024);
    assert_eq!(t.rotate.max_age, Duration::from_secs(30));
    assert_eq!(t.format, Format::JsonGz);
    assert_eq!(plan.topics(), vec!["cloudtrail".to_string()]);
}

#[test]
fn unknown_key_names_key_and_line() {
    let text = MINIMAL.replace("max_age = \"30s\"", "max_age = \"30s\"\nmax_agee = 3");
    let e = Plan::from_toml(&text, "t.toml").unwrap_err().to_string();
    assert!(e.contains("max_agee"), "{e}");
    assert!(e.contains("line 21, column 1"), "{e}");
}

#[test]
fn secrets_are_redacted_in_debug() {
    let plan = Plan::from_toml(MINIMAL, "t.toml").unwrap();
    let shown = format!("{plan:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!shown.contains("topsecret"), "{shown}");
    assert!(shown.contains("http://127.0.0.1:8333"));
}

fn with_catalog(catalog: &str) -> String {
    MINIMAL.replace("[[tables]]", &format!("{catalog}\n[[tables]]"))
}

#[test]
fn each_catalog_kind_parses() {
    let glue = Plan::from_toml(
        &with_catalog("[catalog]\nkind = \"glue\"\ndatabase = \"logs\"\nregion = \"eu-west-1\"\nendpoint = \"http://127.0.0.1:5000\"\ncreate_table = true\naccess_key_id = \"AKID\"\nsecret_access_key = \"glue-secret\""),
        "t.toml",
    )
    .unwrap();
    match &glue.catalog {
        CatalogPlan::Glue(g) => {
            assert_eq!(g.database, "logs");
            assert_eq!(g.region, "eu-west-1");
            assert!(g.create_table);
            assert_eq!(
                g.endpoint.as_ref().unwrap().as_str(),
                "http://127.0.0.1:5000/"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!format!("{glue:?}").contains("glue-secret"));

    let hive = Plan::from_toml(
        &with_catalog(
            "[catalog]\nkind = \"hive\"\ndatabase = \"logs\"\nuri = \"thrift://meta:9083\"",
        ),
        "t.toml",
    )
    .unwrap();
    assert!(matches!(&hive.catalog, CatalogPlan::Hive(h) if h.address == "meta:9083"));

    let hook = Plan::from_toml(
        &with_catalog(
            "[catalog]\nkind = \"webhook\"\nurl = \"https://hooks.example/p\"\nsecret = \"s3cr3t\"",
        ),
        "t.toml",
    )
    .unwrap();
    assert!(matches!(&hook.catalog, CatalogPlan::Webhook(_)));
    assert!(!format!("{hook:?}").contains("s3cr3t"));
    assert!(matches!(
        Plan::from_toml(MINIMAL, "t.toml").unwrap().catalog,
        CatalogPlan::None
    ));
}

#[test]
fn catalog_mistakes_are_named() {
    let cases = [
        ("[catalog]\nkind = \"glue\"", "needs catalog.database"),
        (
            "[catalog]\nkind = \"webhook\"\nurl = \"http://x/\"\ndatabase = \"d\"",
            "catalog.database does not apply",
        ),
        (
            "[catalog]\nkind = \"hive\"\ndatabase = \"d\"\nuri = \"http://x:1\"",
            "thrift://",
        ),
        (
            "[catalog]\nkind = \"nessie\"",
            "catalog.kind: unknown variant `nessie`, expected one of `none`, `glue`, `hive`, `webhook`",
        ),
        (
            "[catalog]\nkind = \"glue\"\ndatabase = \"d\"\naccess_key_id = \"a\"",
            "go together",
        ),
    ];
    for (catalog, want) in cases {
        let e = Plan::from_toml(&with_catalog(catalog), "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{catalog}: {e}");
    }
    // A catalog needs `column=value` at every level of the path.
    let text = with_catalog("[catalog]\nkind = \"webhook\"\nurl = \"http://x/\"")
        .replace("/region={field:awsRegion}", "/{field:awsRegion}");
    let e = Plan::from_toml(&text, "t.toml").unwrap_err().to_string();
    assert!(e.contains("column=value"), "{e}");
}

#[test]
fn reading_uncommitted_records_is_refused() {
    let with = |v: &str| {
        MINIMAL.replace(
            "[kafka.properties]",
            &format!("[kafka.properties]\n\"isolation.level\" = \"{v}\""),
        )
    };
    let e = Plan::from_toml(&with("read_uncommitted"), "t.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("isolation.level") && e.contains("aborted"),
        "{e}"
    );
    Plan::from_toml(&with("read_committed"), "t.toml").unwrap();
}

#[test]
fn auto_commit_is_refused() {
    let text = MINIMAL.replace(
        "[kafka.properties]",
        "[kafka.properties]\n\"enable.auto.commit\" = \"true\"",
    );
    let e = Plan::from_toml(&text, "t.toml").unwrap_err().to_string();
    assert!(e.contains("enable.auto.commit"), "{e}");
}

#[test]
fn dead_letter_destinations_parse() {
    let text = MINIMAL.replace(
        "[tables.rotate]",
        "on_missing_timestamp = \"dlq\"\non_bad_record = \"dlq\"\nmax_record_bytes = \"1MiB\"\n[tables.rotate]",
    );
    let plan = Plan::from_toml(&text, "t.toml").unwrap();
    let t = &plan.tables[0];
    assert_eq!(t.on_missing_timestamp, MissingTimestamp::DeadLetter);
    assert_eq!(t.on_bad_record, BadRecord::DeadLetter);
    assert_eq!(t.max_record_bytes, 1 << 20);
    assert_eq!(plan.dead_letter_prefix, "_errors");
    let kafka = text.replace("[[tables]]", "[dead_letter]\nkind = \"kafka\"\n[[tables]]");
    let e = Plan::from_toml(&kafka, "t.toml").unwrap_err().to_string();
    assert!(e.contains("needs dead_letter.topic"), "{e}");
    let kafka = text.replace(
        "[[tables]]",
        "[dead_letter]\nkind = \"kafka\"\ntopic = \"dlq\"\n[[tables]]",
    );
    let plan = Plan::from_toml(&kafka, "t.toml").unwrap();
    assert_eq!(plan.dead_letter_topic.as_deref(), Some("dlq"));
    let looping = text.replace(
        "[[tables]]",
        "[dead_letter]\nkind = \"kafka\"\ntopic = \"cloudtrail\"\n[[tables]]",
    );
    assert!(Plan::from_toml(&looping, "t.toml").is_err());
    let escape = text.replace("[[tables]]", "[dead_letter]\nprefix = \"../x\"\n[[tables]]");
    assert!(Plan::from_toml(&escape, "t.toml").is_err());
}

#[test]
fn the_shipped_example_is_valid() {
    let text = include_str!("../../../kafka-config/lakesink.example.toml");
    let plan = Plan::from_toml(text, "kafka-config/lakesink.example.toml").unwrap();
    assert_eq!(plan.tables.len(), 3);
    let pq = &plan.tables[1];
    assert_eq!(pq.format, Format::Parquet);
    assert_eq!(pq.registry.as_ref().unwrap().subject, "cloudtrail-value");
    assert_eq!(
        pq.parquet_options.as_ref().unwrap().bloom_filters,
        vec!["eventID", "userIdentity.arn"]
    );
    assert_eq!(
        plan.tables[2].partition.partition_columns(),
        vec!["date", "hour", "resolver"]
    );
}

#[test]
fn bad_units_name_the_key() {
    let text = MINIMAL.replace("\"64MiB\"", "\"64 lots\"");
    let e = Plan::from_toml(&text, "t.toml").unwrap_err().to_string();
    assert!(e.contains("rotate.max_bytes"), "{e}");
    assert!(e.contains("line 19, column 13"), "{e}");
    assert!(e.contains("`64 lots` is not a size"), "{e}");
}

#[test]
fn choices_are_typed_where_the_file_is_read() {
    let cases = [
        (
            "on_bad_record = \"skip\"",
            "tables[0].on_bad_record: unknown variant `skip`, expected `fail` or `dlq`",
        ),
        (
            "format = \"orc\"",
            "tables[0].format: unknown variant `orc`",
        ),
        (
            "on_missing_timestamp = \"now\"",
            "tables[0].on_missing_timestamp: unknown variant `now`",
        ),
        (
            "timestamp = \"wallclock\"",
            "\"kafka\" or { field = \"eventTime\" }",
        ),
        (
            "timestamp = { field = \"t\", unit = \"ns\" }",
            "unknown variant `ns`",
        ),
        (
            "max_future_skew = \"soon\"",
            "tables[0].max_future_skew: `soon` is not a duration",
        ),
        ("max_record_bytes = -1", "tables[0].max_record_bytes"),
    ];
    for (line, want) in cases {
        let text = MINIMAL
            .replace("timestamp = { field = \"eventTime\" }\n", "")
            .replace("[tables.rotate]", &format!("{line}\n[tables.rotate]"));
        let e = Plan::from_toml(&text, "t.toml").unwrap_err().to_string();
        assert!(e.contains(want) && e.contains("line 16"), "{line}: {e}");
    }
    let pq = "format = \"parquet\"\nschema = { file = \"cloudtrail.avsc\" }\n[tables.parquet]\nstatistics = \"all\"\n[tables.rotate]";
    let e = Plan::from_toml(&MINIMAL.replace("[tables.rotate]", pq), "t.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("tables[0].parquet.statistics: unknown variant `all`"),
        "{e}"
    );
}

#[test]
fn defaults_are_those_documented() {
    let plan = Plan::from_toml(MINIMAL, "t.toml").unwrap();
    let p = &plan.pipeline;
    assert_eq!(p.max_buffered_bytes, 1 << 30);
    assert_eq!(p.part_size, 8 << 20);
    assert_eq!(p.drain_timeout, Duration::from_secs(120));
    assert_eq!(p.commit_interval, Duration::from_secs(1));
    assert_eq!(p.commit_timeout, Duration::from_secs(300));
    assert_eq!(plan.http_address.as_deref(), Some("0.0.0.0:9464"));
    assert_eq!(plan.log.format, LogFormat::Text);
    assert_eq!(plan.log.interval, Duration::from_secs(60));
    let t = &plan.tables[0];
    assert_eq!(t.max_record_bytes, 10 << 20);
    assert_eq!(t.max_future_skew, Duration::from_secs(3600));
    assert_eq!(t.compression_level, 6);
    assert_eq!(t.on_bad_record, BadRecord::Fail);
    assert_eq!(t.on_missing_timestamp, MissingTimestamp::Fail);
    let off = MINIMAL.replace("[[tables]]", "[http]\naddress = \"\"\n[[tables]]");
    assert_eq!(Plan::from_toml(&off, "t.toml").unwrap().http_address, None);
    let bad = MINIMAL.replace("[[tables]]", "[http]\naddress = \"9464\"\n[[tables]]");
    assert!(Plan::from_toml(&bad, "t.toml").is_err());
}

#[test]
fn environment_values_reach_the_plan() {
    struct Env;
    impl text::Lookup for Env {
        fn var(&self, name: &str) -> Option<String> {
            (name == "POD_NAME").then(|| "lakesink-3".to_string())
        }
        fn read(&self, path: &str) -> std::io::Result<String> {
            match path {
                "/run/secrets/sasl" => Ok("pa\"ss\n".into()),
                _ => Err(std::io::ErrorKind::NotFound.into()),
            }
        }
    }
    let text = MINIMAL.replace(
        "\"sasl.password\" = \"hunter2\"",
        "\"sasl.password_file\" = \"/run/secrets/sasl\"\n\"group.instance.id\" = \"${POD_NAME}\"",
    );
    let plan = Plan::from_toml_with(&text, "t.toml", &Env).unwrap();
    let props = &plan.kafka.properties;
    assert_eq!(props["sasl.password"], "pa\"ss");
    assert_eq!(props["group.instance.id"], "lakesink-3");
    assert!(!format!("{plan:?}").contains("pa\"ss"));
    let undefined = text.replace("${POD_NAME}", "${NODE_NAME}");
    let e = Plan::from_toml_with(&undefined, "t.toml", &Env)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("t.toml: line 7, column 23: kafka.properties.\"group.instance.id\": environment variable `NODE_NAME` is not set"),
        "{e}"
    );
}

#[test]
fn store_retries_last_ten_minutes_and_at_most_fourteen() {
    let plan = Plan::from_toml(MINIMAL, "t.toml").unwrap();
    assert_eq!(plan.storage.retry_timeout, Duration::from_secs(600));
    let text = MINIMAL.replace(
        "url = \"s3://bucket/prefix\"",
        "url = \"s3://bucket/prefix\"\nretry_timeout = \"20m\"",
    );
    let e = Plan::from_toml(&text, "t.toml").unwrap_err().to_string();
    assert!(
        e.contains("storage.retry_timeout") && e.contains("14m"),
        "{e}"
    );
}

#[test]
fn a_table_reading_too_many_fields_is_refused_at_load() {
    let path: Vec<String> = (0..9).map(|i| format!("f{i}={{field:f{i}}}")).collect();
    let text = MINIMAL.replace(
        "partition_by = \"date={event_time:%Y-%m-%d}/hour={event_time:%H}/region={field:awsRegion}\"",
        &format!("partition_by = \"{}\"", path.join("/")),
    );
    let e = Plan::from_toml(&text, "t.toml").unwrap_err().to_string();
    assert!(
        e.contains("table `cloudtrail`") && e.contains("at most 8 fields"),
        "{e}"
    );
}

#[test]
fn an_auto_memory_budget_is_a_share_of_the_container_limit() {
    let auto = MINIMAL.replace(
        "[[tables]]",
        "[pipeline]\nmax_buffered_bytes = \"auto\"\n[[tables]]",
    );
    let plan = Plan::from_toml(&auto, "t.toml").unwrap();
    assert!(plan.pipeline.max_buffered_auto);
    assert_eq!(
        plan.pipeline.max_buffered_bytes,
        MaxBuffered::Auto.resolve(cgroup_memory_limit())
    );
    assert_eq!(MaxBuffered::Auto.resolve(Some(2 << 30)), 1 << 30);
    assert_eq!(MaxBuffered::Auto.resolve(None), 1 << 30);
    assert_eq!(MaxBuffered::Fixed(ByteSize(7)).resolve(Some(2 << 30)), 7);
    let n = MINIMAL.replace(
        "[[tables]]",
        "[pipeline]\nmax_buffered_bytes = 67108864\n[[tables]]",
    );
    assert_eq!(
        Plan::from_toml(&n, "t.toml")
            .unwrap()
            .pipeline
            .max_buffered_bytes,
        64 << 20
    );
    let bad = MINIMAL.replace(
        "[[tables]]",
        "[pipeline]\nmax_buffered_bytes = \"plenty\"\n[[tables]]",
    );
    let e = Plan::from_toml(&bad, "t.toml").unwrap_err().to_string();
    assert!(
        e.contains("pipeline.max_buffered_bytes") && e.contains("`plenty` is not a size"),
        "{e}"
    );
}

#[test]
fn librdkafkas_prefetch_is_sized_from_the_memory_budget_and_reserved_from_it() {
    let plan = |pipeline: &str, props: &str| {
        Plan::from_toml(
            &MINIMAL
                .replace("[[tables]]", &format!("[pipeline]\n{pipeline}\n[[tables]]"))
                .replace(
                    "[kafka.properties]\n",
                    &format!("[kafka.properties]\n{props}\n"),
                ),
            "t.toml",
        )
    };
    let p = |budget: &str| plan(&format!("max_buffered_bytes = \"{budget}\""), "").unwrap();
    // An eighth of the budget, between 4 and 128 MiB: half for the queue, an eighth (at least
    // 256 KiB) for a fetch response, reserved four times over (with what it decompresses to).
    let one_gib = p("1GiB").kafka.prefetch.unwrap();
    assert_eq!(one_gib.queue_bytes, 64 << 20, "librdkafka's default queue");
    assert_eq!(one_gib.fetch_max_bytes, 16 << 20);
    assert_eq!(one_gib.total(), 128 << 20);
    let small = p("48MiB").kafka.prefetch.unwrap();
    assert_eq!(
        (small.queue_bytes, small.fetch_max_bytes),
        (3 << 20, 768 << 10)
    );
    assert_eq!(p("16MiB").kafka.prefetch.unwrap().queue_bytes, 2 << 20);
    assert_eq!(p("8GiB").kafka.prefetch.unwrap().total(), 128 << 20);
    // A user's own values are kept, and reserved as they are.
    let own = plan(
        "max_buffered_bytes = \"256MiB\"",
        "\"queued.max.messages.kbytes\" = \"10240\"",
    )
    .unwrap();
    assert_eq!(
        own.kafka.prefetch.unwrap(),
        Prefetch {
            queue_bytes: 10 << 20,
            fetch_max_bytes: 4 << 20
        }
    );
    // More than half the budget is refused, naming both settings.
    let e = plan(
        "max_buffered_bytes = \"48MiB\"",
        "\"queued.max.messages.kbytes\" = \"65536\"",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("queued.max.messages.kbytes") && e.contains("max_buffered_bytes"),
        "{e}"
    );
}

#[test]
fn the_region_comes_from_msk_bootstrap_addresses() {
    assert_eq!(
        super::region_of("b-1.lake.abc123.c2.kafka.us-east-1.amazonaws.com:9098,b-2.lake.abc123.c2.kafka.us-east-1.amazonaws.com:9098")
            .as_deref(),
        Some("us-east-1")
    );
    assert_eq!(
        super::region_of("boot-abcd.c1.kafka-serverless.eu-west-1.amazonaws.com:9098").as_deref(),
        Some("eu-west-1")
    );
    assert_eq!(super::region_of("localhost:9092"), None);
    assert_eq!(super::region_of("kafka.internal:9092"), None);
}

#[test]
fn aws_msk_iam_takes_its_region_from_the_brokers_and_refuses_another_mechanism() {
    let config = |kafka: &str, extra: &str| {
        Plan::from_toml(
            &format!(
                "[kafka]\nbrokers = \"{kafka}\"\ngroup_id = \"g\"\n{extra}\n[storage]\nurl = \"memory://\"\n[[tables]]\nname = \"t\"\ntopics = [\"x\"]\npartition_by = \"date={{event_time:%Y-%m-%d}}\"\n"
            ),
            "test.toml",
        )
    };
    let msk = "b-1.lake.abc123.c2.kafka.us-east-1.amazonaws.com:9098";
    let plan = config(msk, "[kafka.aws_msk_iam]").unwrap();
    assert_eq!(plan.kafka.msk_iam.unwrap().region, "us-east-1");
    let plan = config(msk, "[kafka.aws_msk_iam]\nregion = \"eu-central-1\"").unwrap();
    assert_eq!(plan.kafka.msk_iam.unwrap().region, "eu-central-1");
    assert_eq!(config(msk, "").unwrap().kafka.msk_iam, None);
    let e = config(
        msk,
        "[kafka.properties]\n\"sasl.mechanism\" = \"SCRAM-SHA-512\"\n[kafka.aws_msk_iam]",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("sasl.mechanism") && e.contains("aws_msk_iam"),
        "{e}"
    );
    // librdkafka reads the method in any case.
    let e = config(
        msk,
        "[kafka.properties]\n\"sasl.oauthbearer.method\" = \"OIDC\"\n[kafka.aws_msk_iam]",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("oidc") && e.contains("aws_msk_iam"), "{e}");
    // An empty region is no region: the brokers' is taken.
    let plan = config(msk, "[kafka.aws_msk_iam]\nregion = \"\"").unwrap();
    assert_eq!(plan.kafka.msk_iam.unwrap().region, "us-east-1");
}

#[test]
fn a_parquet_table_parses_its_records_once_unless_told_not_to() {
    let table = |extra: &str| {
        let text = format!(
            "{MINIMAL}format = \"parquet\"\nschema = {{ file = \"cloudtrail.avsc\" }}\n{extra}"
        );
        let text = text.replace(
            "[tables.rotate]\nmax_records = 1000\nmax_bytes = \"64MiB\"\nmax_age = \"30s\"\n",
            "",
        );
        Plan::from_toml(&text, "t.toml").unwrap().tables.remove(0)
    };
    let once = table("");
    assert!(once.parquet.as_ref().unwrap().json.is_some());
    let twice = table("[tables.parquet]\none_pass = false\n");
    assert!(twice.parquet.as_ref().unwrap().json.is_none());
}
