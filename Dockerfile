# Lakesink daemon image. Build: docker build -t lakesink .
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libssl-dev pkg-config zlib1g-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY sink sink
COPY schema-registry schema-registry
COPY tests tests
COPY bench bench
RUN cargo build --release -p lakesink --bin lakesink

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 lakesink
COPY --from=build /src/target/release/lakesink /usr/local/bin/lakesink
USER lakesink
ENTRYPOINT ["/usr/local/bin/lakesink"]
CMD ["run", "--config", "/etc/lakesink/lakesink.toml"]
