# syntax=docker/dockerfile:1
#
# nbserve container image.
#
#   docker build -t nbserve .
#   docker run --rm -p 8080:8080 nbserve                      # serve (default CMD)
#   docker run --rm nbserve check --model models/spam-nb.json --min-f1-macro 0.9
#
# Stages: chef (toolchain + cargo-chef) -> planner (dependency recipe) ->
# builder (dependencies cached in their own layer, then the crate) -> runtime
# (distroless, glibc, non-root, nothing writable needed).
#
# The builder is Debian 12 (bookworm) on purpose: the binary links glibc
# dynamically and must not need a newer glibc than distroless cc-debian12 ships.

FROM rust:1.95.0-slim-bookworm AS chef
WORKDIR /build
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    CARGO_NET_RETRY=10
RUN cargo install cargo-chef --version 0.1.78 --locked \
 && rm -rf "${CARGO_HOME}/registry" "${CARGO_HOME}/git"

# Only Cargo.toml/Cargo.lock and the target layout end up in recipe.json, so the
# next stage's dependency layer is reused until the dependencies change.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /build/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
# Debug info is dropped from the shipped binary (size); symbols stay so a
# panic backtrace still names functions.
RUN cargo build --release --locked --bin nbserve \
 && install -D -m 0755 target/release/nbserve /out/usr/local/bin/nbserve \
 && strip --strip-debug /out/usr/local/bin/nbserve \
 && mkdir -p /out/app \
 && cp -R models /out/app/models \
 && chmod -R a+rX,go-w /out \
 && mkdir -p /out-writable/feedback \
 && /out/usr/local/bin/nbserve --help >/dev/null

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=https://github.com/nbserve/nbserve
LABEL org.opencontainers.image.title="nbserve" \
      org.opencontainers.image.description="Bernoulli naive Bayes text classifier server" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# Root-owned, world-readable: any UID can run it and nothing needs to be written,
# so `docker run --read-only --user 12345` works.
COPY --from=builder /out/ /
# The one directory the server may write: the feedback log (a volume in
# docker-compose.yml, shared with the retrain service). A new named volume
# takes the owner of the directory it is mounted on, so 65532 can append.
COPY --from=builder --chown=65532:65532 /out-writable/ /app/
WORKDIR /app
USER 65532:65532
ENV NBSERVE__SERVER__HOST=0.0.0.0
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["/usr/local/bin/nbserve", "healthcheck", "--url", "http://127.0.0.1:8080/health"]
ENTRYPOINT ["/usr/local/bin/nbserve"]
CMD ["serve"]
