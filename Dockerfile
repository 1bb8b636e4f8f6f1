# syntax=docker/dockerfile:1
# The agentstate sidecar image: `docker build -t agentstate .` from the repository root.
# One binary on distroless (glibc, libgcc, CA certificates, no shell), running as 10001
# (the pods' runAsUser); it writes nowhere but its data dir.

FROM rust:1-bookworm AS builder
WORKDIR /app
# The whole workspace: cargo loads every member's manifest (protocol, sidecar, bench) and
# the test targets they declare, even to build one package.
COPY . .
# The cache mounts keep downloaded crates between builds (BuildKit); the build output
# stays in the layer so the next stage can copy it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    cargo build --release -p agentstate --locked \
 && mkdir -p /out/data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /app/target/release/agentstate /usr/local/bin/agentstate
# A data dir owned by 10001 for running the image outside Kubernetes (a named volume
# mounted here takes this ownership); the pods set AGENTSTATE_DATA_DIR to their WAL volume.
COPY --from=builder --chown=10001:10001 /out/data /data
WORKDIR /data
# Numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
# The sidecar listens on 127.0.0.1:7700 unless AGENTSTATE_LISTEN says otherwise; outside a
# pod, publishing the port needs AGENTSTATE_LISTEN=0.0.0.0:7700.
EXPOSE 7700
ENTRYPOINT ["/usr/local/bin/agentstate"]
CMD ["serve"]
