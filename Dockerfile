# Multi-stage build: compile with the Rust toolchain, run on a slim Debian image.
FROM rust:1-bookworm AS build
WORKDIR /src
# librdkafka is built from source by the rdkafka crate (needs make, a C compiler, zlib and OpenSSL).
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential zlib1g-dev libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY avro avro
COPY config config
# Cargo reads every target the manifest names, so the test and bench sources come along.
COPY tests tests
COPY benches benches
RUN cargo build --release --locked --bin hookstream

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates zlib1g libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home hookstream \
 && install -d -o hookstream -g hookstream /var/lib/hookstream/spool
COPY --from=build /src/target/release/hookstream /usr/local/bin/hookstream
COPY config /etc/hookstream/config
COPY avro /etc/hookstream/avro
ENV HOOKSTREAM_CONFIG_DIR=/etc/hookstream/config
# Where the durable spool lives when enabled (mount persistent storage here).
ENV HOOKSTREAM__SPOOL__DIR=/var/lib/hookstream/spool
USER hookstream
# 8080: webhooks (publish it); 9090: metrics and probes (never publish it).
EXPOSE 8080 9090
ENTRYPOINT ["hookstream"]
CMD ["serve"]
