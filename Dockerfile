# Multi-stage build of mostrod from the lock file. No protoc needed: .cargo/config.toml points
# PROTOC at tools/protoc, which runs the protoc bundled in the protoc-bin-vendored crates.
#   docker build -t mostrod .
#   docker run --rm -v mostro-data:/data mostrod init --dir /data
#   docker run -d --name mostrod -v mostro-data:/data mostrod
FROM rust:1.89-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p mostrod \
 && install -m 0755 target/release/mostrod /usr/local/bin/mostrod

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin mostro \
 && mkdir -p /data && chown mostro:mostro /data && chmod 0700 /data
COPY --from=build /usr/local/bin/mostrod /usr/local/bin/mostrod
USER mostro
WORKDIR /data
VOLUME ["/data"]
# Nothing inbound is needed: the daemon dials relays and the Lightning node. The admin listener
# stays on loopback inside the container; expose [metrics] listen (e.g. 0.0.0.0:9738) to scrape.
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/mostrod"]
CMD ["run", "--config", "/data/mostrod.toml", "--log-format", "json"]
