#!/usr/bin/env bash
# Proves the Docker build context holds what the build needs, without a Docker engine: copies
# the paths of the Dockerfile's build-stage `COPY` lines (minus .dockerignore's entries) into an
# empty directory, as `docker build` would, and resolves the workspace there with
# `cargo metadata --locked` (every path dependency and [patch] must be present; registry crates
# come from crates.io or the local cache, as they would in `docker build`).
set -euo pipefail
cd "$(dirname "$0")/.."
ctx="$(mktemp -d "${TMPDIR:-/tmp}/lakesink-docker-context.XXXXXX")"
trap 'rm -rf "$ctx"' EXIT

# Build-stage COPY lines: `COPY src... dest` (no --from=).
awk '/^FROM/{stage++} stage==1 && /^COPY / && !/--from=/' Dockerfile | while read -r _ rest; do
  # shellcheck disable=SC2086
  set -- $rest
  dest="${!#}"
  n=$#
  for ((i = 1; i < n; i++)); do
    src="${!i}"
    if [ "$dest" = "./" ] || [ "$dest" = "." ]; then
      cp -a "$src" "$ctx/"
    else
      mkdir -p "$ctx/$(dirname "$dest")"
      cp -a "$src" "$ctx/$dest"
    fi
  done
done
# What .dockerignore keeps out.
while read -r pattern; do
  case "$pattern" in ''|'#'*) continue ;; esac
  pattern="${pattern#\*\*/}"
  find "$ctx" -name "$pattern" -prune -exec rm -rf {} + 2>/dev/null || true
done < .dockerignore

if ! (cd "$ctx" && cargo metadata --locked --format-version 1 >/dev/null 2>"$ctx.err"); then
  echo "the Docker build context does not resolve the workspace:" >&2
  cat "$ctx.err" >&2
  rm -f "$ctx.err"
  exit 1
fi
rm -f "$ctx.err"
echo "docker build context: the workspace resolves (cargo metadata --locked) from $(awk '/^FROM/{stage++} stage==1 && /^COPY /' Dockerfile | wc -l) COPY lines"
