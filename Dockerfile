# syntax=docker/dockerfile:1
#
# lifeguard container image: a statically linked (musl) binary on a
# distroless base, running as a non-root user. Build:
#
#   docker build -t lifeguard:0.1.0 .
#
# The image writes nothing to its filesystem (logs go to stdout), so it runs
# with readOnlyRootFilesystem: true. The config is read from
# /etc/lifeguard/config.yaml: mount a ConfigMap there as a directory (never
# with subPath, or hot reload cannot see updates).

# --- build: Alpine's Rust toolchain targets musl, linked statically ----------
# Any Rust >= 1.85 (rust-version in Cargo.toml); pin a digest in your pipeline.
ARG RUST_IMAGE=rust:1-alpine
FROM ${RUST_IMAGE} AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
ENV RUSTFLAGS="-C target-feature=+crt-static" \
    CARGO_TERM_COLOR=never
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin lifeguard \
 && install -D -m 0755 target/release/lifeguard /out/lifeguard \
 && /out/lifeguard check --config /dev/null

# --- run: no shell, no package manager, uid 65532 ----------------------------
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/lifeguard /usr/local/bin/lifeguard
COPY config.yaml /etc/lifeguard/config.yaml
USER 65532:65532
# 8080: client listener (the Service's target); 9901: admin port (probes,
# /metrics, /status, operator endpoints).
EXPOSE 8080 9901
# SIGTERM starts the drain (see docs/drain-and-kubernetes.md); a second one
# exits at once.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/lifeguard"]
CMD ["--config", "/etc/lifeguard/config.yaml"]
