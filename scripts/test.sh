#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need (cached in ~/.cache/lakesink),
# starts the real servers for this run — tansu (Kafka protocol, sqlite storage), SeaweedFS
# (S3), Azurite (Azure Blob), moto (AWS Glue) and a Hive Metastore on 127.0.0.1 — runs every
# test of the workspace, and stops the servers again. A full run (no arguments) first fails on
# unformatted code or any clippy warning.
#
#   scripts/test.sh [extra cargo-nextest arguments, e.g. a test name filter]
#   scripts/test.sh --servers-only     start the servers and wait (for debugging)
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(scripts/install-testbed.sh --env)"

# Lint gates (a full run, as CI's): unformatted code or any clippy warning fails the run.
if [ $# -eq 0 ]; then
  cargo fmt --all -- --check
  cargo clippy --workspace --all-targets --quiet -- -D warnings
  echo "lint gates (cargo fmt --check, clippy -D warnings): OK"
fi

RUN="$(mktemp -d "${TMPDIR:-/tmp}/lakesink-test.XXXXXX")"
# SeaweedFS answers every PUT with 500 when its disk is nearly full (or it can make no more
# volumes, see below), which looks like a product failure in a dozen tests: say so up front.
free_kb="$(df -Pk "$RUN" | awk 'NR==2 {print $4}')"
used_pct="$(df -Pk "$RUN" | awk 'NR==2 {sub("%", "", $5); print $5}')"
if [ "${free_kb:-0}" -lt $((5 * 1024 * 1024)) ] || [ "${used_pct:-0}" -ge 90 ]; then
  echo "warning: $RUN's disk is ${used_pct}% full ($((free_kb / 1024)) MiB free): SeaweedFS may refuse writes (HTTP 500) and S3 tests fail" >&2
fi
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "${KEEP_TEST_LOGS:-}" = "" ]; then rm -rf "$RUN"; else echo "server logs kept in $RUN" >&2; fi
}
trap cleanup EXIT

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # port name seconds log
  local deadline=$((SECONDS + $3))
  until port_open "$1"; do
    if [ $SECONDS -ge $deadline ]; then echo "$2 did not open port $1 within $3 s; its log:" >&2; tail -n 40 "$4" >&2; exit 1; fi
    sleep 0.2
  done
}
free_port() { "$LAKESINK_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# SeaweedFS: S3 on its fixed port 8333 (it opens ~11 fixed ports, so one instance per machine).
# Each test's bucket is a collection with a volume of its own, and `weed mini` caps the volumes
# at free disk / volume size, with 1 GiB volumes on a large disk: ~36 on 36 GB free, while a full
# run fills ~35 buckets. Past the cap every PUT is a 500 (a CI run lost its last 14 tests so).
# The cap and the size are set here; volumes are not preallocated, so they cost no disk.
if port_open 8333; then
  echo "port 8333 is taken: is another SeaweedFS (or test run) still running?" >&2
  exit 1
fi
export LAKESINK_S3_KEY=lakesink LAKESINK_S3_SECRET=lakesink-secret-key
mkdir -p "$RUN/weed"
AWS_ACCESS_KEY_ID=$LAKESINK_S3_KEY AWS_SECRET_ACCESS_KEY=$LAKESINK_S3_SECRET \
  "$LAKESINK_WEED" mini -dir="$RUN/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -webdav=false -admin.ui=false \
  -volume.max=4000 -master.volumeSizeLimitMB=64 \
  >"$RUN/weed.log" 2>&1 &
PIDS+=($!)
export LAKESINK_S3_ENDPOINT=http://127.0.0.1:8333

# tansu with sqlite storage on a free port.
TANSU_PORT="$(free_port)"
# (tansu reads `sqlite://` paths relative to its working directory.)
(cd "$RUN" && exec env -u CLUSTER_ID -u LISTENER_URL -u ADVERTISED_LISTENER_URL -u STORAGE_ENGINE -u SCHEMA_REGISTRY \
  "$LAKESINK_TANSU" broker --listener-url "tcp://127.0.0.1:$TANSU_PORT" \
  --advertised-listener-url "tcp://127.0.0.1:$TANSU_PORT" --storage-engine "sqlite://tansu.db") \
  >"$RUN/tansu.log" 2>&1 &
PIDS+=($!)
export LAKESINK_BROKERS="127.0.0.1:$TANSU_PORT"

# moto: the AWS Glue API (in memory) on a free port.
MOTO_PORT="$(free_port)"
"$LAKESINK_MOTO" -H 127.0.0.1 -p "$MOTO_PORT" >"$RUN/moto.log" 2>&1 &
PIDS+=($!)
export LAKESINK_GLUE_ENDPOINT="http://127.0.0.1:$MOTO_PORT"

# Azurite: Azure Blob Storage (the emulator's well-known account `devstoreaccount1`) on a free
# port; the tests put its endpoint in the config (`Testbed::azure_storage`).
AZURITE_PORT="$(free_port)"
mkdir -p "$RUN/azurite"
"$LAKESINK_AZURITE" --blobHost 127.0.0.1 --blobPort "$AZURITE_PORT" --location "$RUN/azurite" \
  --disableTelemetry --skipApiVersionCheck >"$RUN/azurite.log" 2>&1 &
PIDS+=($!)
export LAKESINK_AZURITE_URL="http://127.0.0.1:$AZURITE_PORT"

# Hive Metastore 2.3 (Derby) in a network namespace of its own (it binds every address), reached
# through a forwarder on a free port of 127.0.0.1.
mkdir -p "$RUN/hive"
unshare -n scripts/hive-metastore.sh "$RUN/hive" "$LAKESINK_HIVE_JARS" >"$RUN/hive.log" 2>&1 &
HIVE_PID=$!
PIDS+=($HIVE_PID)
HIVE_PORT="$(free_port)"
"$LAKESINK_PYTHON" scripts/netns-forward.py "$HIVE_PORT" "$HIVE_PID" 9083 >"$RUN/hive-forward.log" 2>&1 &
PIDS+=($!)
export LAKESINK_HIVE_URI="thrift://127.0.0.1:$HIVE_PORT"

# Build while the servers start.
cargo build -p lakesink --bin lakesink
export LAKESINK_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/lakesink"

wait_port "$TANSU_PORT" tansu 60 "$RUN/tansu.log"
wait_port 8333 SeaweedFS 60 "$RUN/weed.log"
wait_port "$MOTO_PORT" moto 60 "$RUN/moto.log"
wait_port "$AZURITE_PORT" Azurite 60 "$RUN/azurite.log"
# SeaweedFS answers on 8333 a moment before its S3 gateway serves requests.
deadline=$((SECONDS + 60))
until "$LAKESINK_PYTHON" tests/py/s3_admin.py list-buckets >/dev/null 2>&1; do
  if [ $SECONDS -ge $deadline ]; then echo "SeaweedFS S3 is not answering; its log:" >&2; tail -n 40 "$RUN/weed.log" >&2; exit 1; fi
  sleep 0.5
done
# The metastore takes ~10 s to create its Derby schema.
deadline=$((SECONDS + 120))
until "$LAKESINK_PYTHON" tests/py/hive_admin.py ping >/dev/null 2>&1; do
  if [ $SECONDS -ge $deadline ]; then echo "the Hive Metastore is not answering; its log:" >&2; grep -v StatusConsoleListener "$RUN/hive.log" | tail -n 40 >&2; exit 1; fi
  sleep 0.5
done
export LAKESINK_TEST_RUN="$RUN"
env | grep '^LAKESINK_' | sed 's/^/export /' >"$RUN/env"

if [ "${1:-}" = "--servers-only" ]; then
  # For debugging: keep the servers up; `source $RUN/env` in another shell.
  echo "servers up; environment in $RUN/env (Ctrl-C to stop)" >&2
  sleep infinity
fi
# Keep the benchmark working: a small debug-build run (its figures mean nothing), before the
# tests so that the test runner's summary stays the last thing printed.
if [ $# -eq 0 ]; then
  cargo build -p lakesink-bench
  "${CARGO_TARGET_DIR:-$PWD/target}/debug/lakesink-bench" --quick \
    --out "$RUN/bench-quick.md" --workdir "$RUN/bench" >/dev/null
  echo "benchmark (quick, debug build): OK"
fi

cargo nextest run --workspace --no-fail-fast "$@"

