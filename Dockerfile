# mpp-cancel: a small runtime image with the release binary. Build: docker build -t mpp-cancel .
# No Docker engine runs on the project's build machines, so this image is never built there;
# scripts/check-image (in .ci/run) runs the build stage's command below in the context that
# .dockerignore leaves, and the health command has its own test (tests/observability_kit.rs).
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
 && groupadd --system --gid 10001 mpp \
 && useradd --system --uid 10001 --gid 10001 mpp
COPY --from=build /src/target/release/mpp-cancel /usr/local/bin/mpp-cancel
COPY config/default.toml /etc/mpp-cancel/default.toml
# Numeric, so that Kubernetes' runAsNonRoot can verify it (deploy/k8s runs as 10001:10001).
USER 10001:10001
# The production rules (as with APP_ENV unset): mpp-cancel refuses to start until the operator
# gives what has no default (alipayplus ids and keys, wallet.kind, ...); `mpp-cancel check-config`
# says what is missing without connecting anywhere.
ENV APP_ENV=production MPP_CANCEL_LOG_FORMAT=json
# GET /healthz on the internal listener (internal.listen from MPP_CANCEL__INTERNAL__LISTEN, a
# wildcard address reached through loopback); `health --ready` probes /readyz instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["mpp-cancel", "health"]
# Public listener (Alipay+) and internal listener (health, metrics, internal API).
EXPOSE 8080 8081
ENTRYPOINT ["mpp-cancel", "--config-dir", "/etc/mpp-cancel"]
CMD ["serve"]
