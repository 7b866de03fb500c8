//! The deployment files, validated without a Docker engine: the Docker build context resolves
//! the workspace, `docker-compose.yml` is valid against the Compose Specification's JSON
//! schema, and the config it mounts passes `lakesink check --offline`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_docker_build_context_holds_what_the_build_needs() {
    let out = Command::new(root().join("scripts/check-docker-context.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_compose_file_follows_the_compose_specification_and_its_config_checks() {
    let schema = std::env::var("LAKESINK_COMPOSE_SCHEMA")
        .expect("LAKESINK_COMPOSE_SCHEMA (scripts/install-testbed.sh --env)");
    let python = PathBuf::from(std::env::var("LAKESINK_PYTHON").expect("LAKESINK_PYTHON"));
    let validator = python.with_file_name("check-jsonschema");
    let compose = root().join("docker-compose.yml");
    let out = Command::new(&validator)
        .arg("--schemafile")
        .arg(&schema)
        .arg(&compose)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
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
    let bin = std::env::var("LAKESINK_BIN")
        .unwrap_or_else(|_| root().join("target/debug/lakesink").display().to_string());
    let out = Command::new(bin)
        .args(["check", "--offline", "--config"])
        .arg(root().join("kafka-config/lakesink.example.toml"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
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
    let bin = std::env::var("LAKESINK_BIN")
        .unwrap_or_else(|_| root().join("target/debug/lakesink").display().to_string());
    let out = Command::new(bin).arg("--version").output().unwrap();
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{v}");
    let rev = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(root())
        .output()
        .unwrap();
    let rev = String::from_utf8_lossy(&rev.stdout).trim().to_string();
    assert!(
        v.starts_with(&format!("lakesink {} (git ", env!("CARGO_PKG_VERSION")))
            && v.contains(&rev)
            && v.contains(", librdkafka 2."),
        "{v} (HEAD {rev})"
    );
}
