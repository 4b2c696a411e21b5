# mpp-cancel: a small runtime image with the release binary. Build: docker build -t mpp-cancel .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Queries are checked against the committed .sqlx/ cache: no database at build time.
ENV SQLX_OFFLINE=true
RUN cargo build --release --locked --bin mpp-cancel

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 mpp
COPY --from=build /src/target/release/mpp-cancel /usr/local/bin/mpp-cancel
COPY config/default.toml /etc/mpp-cancel/default.toml
USER mpp
# The production rules (as with APP_ENV unset): mpp-cancel refuses to start until the operator
# gives what has no default (alipayplus ids and keys, wallet.kind, ...); `mpp-cancel check-config`
# says what is missing without connecting anywhere.
ENV APP_ENV=production MPP_CANCEL_LOG_FORMAT=json
# Public listener (Alipay+) and internal listener (health, metrics, internal API).
EXPOSE 8080 8081
ENTRYPOINT ["mpp-cancel", "--config-dir", "/etc/mpp-cancel"]
CMD ["serve"]
