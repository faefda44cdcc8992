# syntax=docker/dockerfile:1
# switchyard in a container: a release build in the Rust image, then only the
# binary in a slim Debian runtime, run as an unprivileged user.
#
#   docker build -t switchyard --build-arg SWITCHYARD_COMMIT="$(git rev-parse --short HEAD)" .
#   docker run --rm -p 8080:8080 --env-file switchyard.env \
#     -v "$PWD/switchyard.yaml:/etc/switchyard/switchyard.yaml:ro" switchyard
#
# Docker's default seccomp profile blocks io_uring: the gateway then runs on
# the legacy (epoll) driver, which keeps every deadline. README.md, "Docker",
# says how to allow io_uring.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# No .git in the build context: build.rs stamps this into --version instead.
ARG SWITCHYARD_COMMIT=unknown
ENV SWITCHYARD_COMMIT=${SWITCHYARD_COMMIT}
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin switchyard \
    && install -m 0755 target/release/switchyard /usr/local/bin/switchyard

FROM debian:bookworm-slim
# TLS roots are built into the binary (webpki-roots): no ca-certificates needed.
RUN useradd --system --uid 10001 --home-dir /var/lib/switchyard --shell /usr/sbin/nologin switchyard \
    && install -d -o switchyard -g switchyard -m 0700 /var/lib/switchyard \
    && install -d -m 0755 /etc/switchyard
COPY --from=build /usr/local/bin/switchyard /usr/local/bin/switchyard
COPY config/switchyard.example.yaml /etc/switchyard/switchyard.yaml
USER 10001:10001
WORKDIR /var/lib/switchyard
ENV SWITCHYARD_CONFIG=/etc/switchyard/switchyard.yaml
# 8080: clients (listen:); 9090: admin (/metrics, /healthz), when admin.listen
# is set to 0.0.0.0:9090 with a token. Probe /healthz from the orchestrator:
# the image has no curl, so it declares no HEALTHCHECK.
EXPOSE 8080 9090
STOPSIGNAL SIGTERM
ENTRYPOINT ["switchyard"]
CMD ["run", "--config", "/etc/switchyard/switchyard.yaml"]
