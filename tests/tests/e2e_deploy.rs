//! The deployment files, validated without a Docker engine: the Docker build context resolves
//! the workspace, `docker-compose.yml` is valid against the Compose Specification's JSON
//! schema, and the config it mounts passes `lakesink check --offline`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `lakesink` binary under test.
fn lakesink() -> Command {
    Command::new(
        std::env::var("LAKESINK_BIN")
            .unwrap_or_else(|_| root().join("target/debug/lakesink").display().to_string()),
    )
}

/// Runs `cmd` to its end; panics with its output unless it succeeds. Returns its stdout.
fn succeeds(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{cmd:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_docker_build_context_holds_what_the_build_needs() {
    succeeds(&mut Command::new(
        root().join("scripts/check-docker-context.sh"),
    ));
}

#[test]
fn the_compose_file_follows_the_compose_specification_and_its_config_checks() {
    let schema = std::env::var("LAKESINK_COMPOSE_SCHEMA")
        .expect("LAKESINK_COMPOSE_SCHEMA (scripts/install-testbed.sh --env)");
    let python = PathBuf::from(std::env::var("LAKESINK_PYTHON").expect("LAKESINK_PYTHON"));
    let validator = python.with_file_name("check-jsonschema");
    let compose = root().join("docker-compose.yml");
    succeeds(
        Command::new(&validator)
            .arg("--schemafile")
            .arg(&schema)
            .arg(&compose),
    );
    // The validator can fail: a service with an unknown key is refused.
    let broken = tempfile::NamedTempFile::new().unwrap();
    let text = std::fs::read_to_string(&compose).unwrap().replace(
        "    restart: unless-stopped",
        "    restart_policy: sometimes",
    );
    std::fs::write(broken.path(), text).unwrap();
    let out = Command::new(&validator)
        .arg("--schemafile")
        .arg(&schema)
        .arg(broken.path())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a broken compose file must fail validation"
    );

    // The config the compose file mounts, and what it promises a new user.
    let compose_text = std::fs::read_to_string(&compose).unwrap();
    let mounted = "./kafka-config/lakesink.example.toml:/etc/lakesink/lakesink.toml";
    assert!(compose_text.contains(mounted), "{compose_text}");
    assert!(
        compose_text.contains("9464:9464"),
        "the metrics port is published"
    );
    assert!(
        compose_text.contains("\"generate\""),
        "a producer keeps data coming"
    );
    let said = succeeds(
        lakesink()
            .args(["check", "--offline", "--config"])
            .arg(root().join("kafka-config/lakesink.example.toml")),
    );
    assert!(
        said.contains("http: /metrics, /healthz and /readyz on http://0.0.0.0:9464"),
        "{said}"
    );
    assert!(
        said.contains("max_age 30s"),
        "files within a minute: {said}"
    );
}

#[test]
fn the_version_names_the_git_revision_and_librdkafka() {
    let v = succeeds(lakesink().arg("--version"));
    let rev = succeeds(
        Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(root()),
    )
    .trim()
    .to_string();
    assert!(
        v.starts_with(&format!("lakesink {} (git ", env!("CARGO_PKG_VERSION")))
            && v.contains(&rev)
            && v.contains(", librdkafka 2."),
        "{v} (HEAD {rev})"
    );
    // The test command installs libcurl's headers (scripts/install-testbed.sh), so the
    // librdkafka built here can fetch OAUTHBEARER tokens from an OIDC provider.
    assert!(
        v.contains(" with OIDC)"),
        "{v}: librdkafka was built without libcurl's headers (had libcurl4-openssl-dev been installed after it was built? `cargo clean -p rdkafka-sys -p curl-sys`)"
    );
}

#[test]
fn the_kubernetes_manifests_validate_and_their_configs_check() {
    let python = PathBuf::from(std::env::var("LAKESINK_PYTHON").expect("LAKESINK_PYTHON"));
    let dir = root().join("deploy/kubernetes");
    let files = ["lakesink.yaml", "sidecar.yaml"];
    succeeds(
        Command::new(python.with_file_name("kubernetes-validate"))
            .args(["--strict", "--kubernetes-version", "1.33.0"])
            .args(files.iter().map(|f| dir.join(f))),
    );
    // Each ConfigMap's lakesink.toml is a valid config, with the pod's environment.
    let tmp = tempfile::tempdir().unwrap();
    let script = r#"
import sys, yaml, pathlib
n = 0
for f in sys.argv[2:]:
    for doc in yaml.safe_load_all(open(f)):
        if doc and doc["kind"] == "ConfigMap" and "lakesink.toml" in doc["data"]:
            pathlib.Path(sys.argv[1], f"{n}.toml").write_text(doc["data"]["lakesink.toml"])
            n += 1
print(n)
"#;
    let n: usize = succeeds(
        Command::new(&python)
            .arg("-c")
            .arg(script)
            .arg(tmp.path())
            .args(files.iter().map(|f| dir.join(f))),
    )
    .trim()
    .parse()
    .unwrap();
    assert_eq!(n, 2);
    // The Secret's files, where the pod mounts them, here in the temporary directory.
    let secrets = tmp.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    std::fs::write(secrets.join("kafka-password"), "from-the-secret\n").unwrap();
    for i in 0..n {
        let path = tmp.path().join(format!("{i}.toml"));
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("/etc/lakesink/secrets", &secrets.display().to_string());
        std::fs::write(&path, text).unwrap();
        let said = succeeds(
            lakesink()
                .args(["check", "--offline", "--config"])
                .arg(&path)
                .env("POD_NAME", "lakesink-0"),
        );
        assert!(said.contains("group.instance.id = lakesink-0"), "{said}");
        assert!(
            !said.contains("from-the-secret"),
            "secrets are redacted: {said}"
        );
    }
}

#[test]
fn each_kafka_auth_example_checks_and_makes_a_librdkafka_client() {
    use rdkafka::consumer::BaseConsumer;
    let dir = root().join("kafka-config/auth");
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "the-api-secret\n").unwrap();
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        n += 1;
        // The environment a deployment gives it.
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "/etc/lakesink/secrets/confluent-api-secret",
            &secret.path().display().to_string(),
        );
        let text = [
            "KAFKA_PASSWORD",
            "CONFLUENT_API_KEY",
            "REDPANDA_PASSWORD",
            "OIDC_CLIENT_SECRET",
        ]
        .iter()
        .fold(text, |t, v| {
            t.replace(&format!("${{{v}}}"), "from-the-environment")
        });
        let plan = lakesink::Plan::from_toml(&text, &path.display().to_string())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let cfg = lakesink::consume::client_config(&plan.kafka);
        assert!(
            cfg.get("security.protocol")
                .unwrap_or_default()
                .contains("SSL"),
            "{}",
            path.display()
        );
        if path.ends_with("mtls.toml") {
            continue; // its certificate files exist only where it is deployed
        }
        // librdkafka checks every property name and value when it makes the client.
        lakesink::consume::client_config(&plan.kafka)
            .create::<BaseConsumer>()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    assert_eq!(n, 7);
}

/// Lakesink's MSK IAM token against AWS's own signer (aws-msk-iam-sasl-signer-python, on
/// botocore) at the same clock: the same signed URL but for the User-Agent each signer names
/// itself with, and the same expiry. No MSK cluster runs here; this is what one checks.
#[test]
fn the_msk_iam_token_is_the_one_aws_signer_makes() {
    use lakesink::kafka::msk_iam;
    let python = PathBuf::from(std::env::var("LAKESINK_PYTHON").expect("LAKESINK_PYTHON"));
    let query = |url: &str| -> std::collections::BTreeMap<String, String> {
        let (base, q) = url.split_once('?').unwrap();
        assert!(
            base.starts_with("https://kafka.") && base.ends_with(".amazonaws.com/"),
            "{url}"
        );
        q.split('&')
            .map(|kv| kv.split_once('=').unwrap())
            .filter(|(k, _)| *k != "User-Agent")
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let cases = [
        (
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            Some("session/token+=="),
            "us-east-1",
            1_704_164_645,
        ),
        (
            "ASIAQEXAMPLE0000",
            "0123456789abcdef/+ABCDEFabcdef0123456789",
            None,
            "eu-central-1",
            1_767_225_599,
        ),
        (
            "AKIA2",
            "s",
            Some("FwoGZXIvYXdzEJr//////////wEaDM"),
            "ap-southeast-2",
            1_800_000_000,
        ),
    ];
    for (key, secret, session, region, at) in cases {
        let now = chrono::DateTime::from_timestamp(at, 0).unwrap();
        let ours = msk_iam::token(
            &msk_iam::Credentials {
                key_id: key,
                secret_key: secret,
                token: session,
            },
            region,
            now,
        );
        let out = Command::new(&python)
            .arg(root().join("tests/py/msk_iam_token.py"))
            .args([key, secret, session.unwrap_or("-"), region, &at.to_string()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let aws: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let our_url = String::from_utf8(base64url_decode(&ours.value)).unwrap();
        assert_eq!(
            query(&our_url),
            query(aws["url"].as_str().unwrap()),
            "{region} at {at}"
        );
        assert_eq!(ours.expires_ms, aws["expires_ms"].as_i64().unwrap());
    }
}

fn base64url_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    // The unpadded URL-safe alphabet, as AWS's signers encode the token.
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap_or_else(|e| panic!("not unpadded base64url ({e}): {s}"))
}
