# Alice Realtime: a multi-stage build. The runtime image holds one static-ish binary and runs as
# an unprivileged user. Build with `docker build -t alice-realtime .`.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p alice-shell --bin alice-realtime

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /var/lib/alice alice \
    && mkdir -p /var/lib/alice && chown alice /var/lib/alice
COPY --from=build /src/target/release/alice-realtime /usr/local/bin/alice-realtime
USER alice
ENV DATA_DIR=/var/lib/alice REALTIME_PORT=3001 LOG_FORMAT=json
VOLUME /var/lib/alice
EXPOSE 3001
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
    CMD curl -fsS http://127.0.0.1:3001/health || exit 1
ENTRYPOINT ["/usr/local/bin/alice-realtime"]
