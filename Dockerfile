# syntax=docker/dockerfile:1
#
# nbserve container image: `scratch` + the nbserve binary + exactly the shared
# libraries it links (found by this build with ldd, never listed by hand) + the
# shipped model + the SBOM. No shell, no package manager, nothing writable.
#
#   docker build -t nbserve .                  # compiles the binary (any Docker host)
#   scripts/build-image.sh                     # offline too: podman, buildah or docker
#   docker run --rm -p 8080:8080 nbserve       # serve (default CMD)
#   docker run --rm nbserve check --model models/spam-nb.json --min-f1-macro 0.9
#
# Build arguments:
#   BUILDER  the base of the build stages (default: the pinned Rust image). It
#            needs a POSIX shell, coreutils, ldd and chroot, and the glibc the
#            binary links: the libraries copied into the image come from it.
#            scripts/build-image.sh passes a Debian rootfs of the host's release
#            (debootstrap, `podman import`) when no registry is reachable.
#   BINARY   `compile` (default): cargo build --release --locked in BUILDER, and
#            the SBOM from Cargo.lock (cargo-cyclonedx). `prebuilt`: both taken
#            from the build context, dist/nbserve and dist/sbom.cdx.json
#            (scripts/build-image.sh puts the host's release binary there).
#
# Stages: chef (toolchain + cargo-chef + cargo-cyclonedx) -> planner
# (dependency recipe) -> compile (dependencies cached in their own layer, then
# the crate) | prebuilt -> binary (the one BINARY names) -> builder (the image
# root in /out: binary, its libraries, model, SBOM; proven to run there alone)
# -> runtime (scratch). Unused stages are skipped (BuildKit, buildah).
ARG BUILDER=rust:1.95.0-slim-bookworm
ARG BINARY=compile

FROM ${BUILDER} AS chef
WORKDIR /build
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    CARGO_NET_RETRY=10
# cargo-cyclonedx: the same pin as scripts/install-cargo-cyclonedx.sh.
RUN cargo install cargo-chef --version 0.1.78 --locked \
 && cargo install cargo-cyclonedx --version 0.5.9 --locked \
 && rm -rf "${CARGO_HOME}/registry" "${CARGO_HOME}/git"

# Only Cargo.toml/Cargo.lock and the target layout end up in recipe.json, so the
# next stage's dependency layer is reused until the dependencies change.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS compile
# Given (e.g. the commit time), the SBOM is reproducible: that timestamp, no
# random serial number.
ARG SOURCE_DATE_EPOCH
COPY --from=planner /build/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
# Debug info is dropped from the shipped binary (size); symbols stay so a
# panic backtrace still names functions.
RUN cargo build --release --locked --bin nbserve \
 && install -D -m 0755 target/release/nbserve /dist/nbserve \
 && strip --strip-debug /dist/nbserve \
 && scripts/sbom.sh --cargo-cyclonedx "$(command -v cargo-cyclonedx)" /dist/sbom.cdx.json

FROM scratch AS prebuilt
COPY dist/nbserve dist/sbom.cdx.json /dist/

FROM ${BINARY} AS binary

FROM ${BUILDER} AS builder
WORKDIR /src
COPY scripts/lib/collect-libs.sh /usr/local/bin/collect-libs
COPY models/ models/
COPY --from=binary /dist/ /dist/
# The last two commands prove the root is complete: the binary starts and
# loads the model with nothing else there. /etc/passwd names the default
# user; any other UID works as well.
RUN install -D -m 0755 /dist/nbserve /out/usr/local/bin/nbserve \
 && collect-libs /out /usr/local/bin/nbserve \
 && install -D -m 0644 /dist/sbom.cdx.json /out/usr/share/doc/nbserve/sbom.cdx.json \
 && mkdir -p /out/app /out/etc /out-writable/feedback \
 && install -d -m 1777 /out/tmp \
 && cp -R models /out/app/models \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/app:/sbin/nologin\n' >/out/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' >/out/etc/group \
 && chmod -R a+rX,go-w /out \
 && chroot /out /usr/local/bin/nbserve --version \
 && chroot /out /usr/local/bin/nbserve check --model /app/models/spam-nb.json --min-f1-macro 0

FROM scratch AS runtime
ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=https://github.com/nbserve/nbserve
LABEL org.opencontainers.image.title="nbserve" \
      org.opencontainers.image.description="Bernoulli naive Bayes text classifier server" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      io.github.nbserve.sbom="/usr/share/doc/nbserve/sbom.cdx.json" \
      io.github.nbserve.sbom.format="CycloneDX JSON, from Cargo.lock (cargo-cyclonedx)"
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
