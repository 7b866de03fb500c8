# Lakesink daemon image. Build:
#   docker build --build-arg LAKESINK_GIT_REV=$(git rev-parse --short=12 HEAD) -t lakesink .
# (`lakesink --version` prints the revision; .git is not in the build context.)
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libssl-dev libcurl4-openssl-dev pkg-config zlib1g-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY sink sink
COPY schema-registry schema-registry
COPY tests tests
COPY bench bench
COPY vendor vendor
ARG LAKESINK_GIT_REV=unknown
ENV LAKESINK_GIT_REV=$LAKESINK_GIT_REV
RUN cargo build --release --locked -p lakesink --bin lakesink

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 libcurl4 zlib1g && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 lakesink
COPY --from=build /src/target/release/lakesink /usr/local/bin/lakesink
USER lakesink
# /metrics, /healthz and /readyz ([http] address; docs/OPERATING.md).
EXPOSE 9464
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9464 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/local/bin/lakesink"]
CMD ["run", "--config", "/etc/lakesink/lakesink.toml"]
