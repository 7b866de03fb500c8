#!/usr/bin/env bash
# The benchmark (bench/): builds release binaries and measures Lakesink against the ceiling of
# the same work on the same data. Results print and go to bench/results/latest.md.
#
#   scripts/bench.sh                 # 2,500,000 events (~3.6 GB of JSON), ~10 minutes
#   scripts/bench.sh --records N     # another size;  --quick: 20,000 events
#   scripts/bench.sh --s3 http://127.0.0.1:8333/BUCKET   # also into an S3 server
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p lakesink -p lakesink-bench
exec "${CARGO_TARGET_DIR:-target}/release/lakesink-bench" "$@"
