# syntax=docker/dockerfile:1
# drama-server in three stages: the release binary (migrations are embedded in it), a pinned
# static ffmpeg (the imageio-ffmpeg wheel scripts/test uses, hash-checked by pip), and a small
# Debian runtime holding only those two, CA certificates and bash (for the health check),
# running as an unprivileged user. docs/DEPLOY.md describes the image and compose.yaml.

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS build
# aws-lc-sys (TLS) builds C code with cmake.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p drama-server \
 && cp target/release/drama-server /usr/local/bin/drama-server

FROM python:3.12-slim-bookworm AS ffmpeg
ARG TARGETARCH
RUN set -eu; \
    case "${TARGETARCH:-amd64}" in \
      amd64) platform=manylinux_2_28_x86_64 ;; \
      arm64) platform=manylinux_2_28_aarch64 ;; \
      *) echo "no pinned ffmpeg for ${TARGETARCH}" >&2; exit 1 ;; \
    esac; \
    printf '%s' 'imageio-ffmpeg==0.8.1 --hash=sha256:050d6850601c3b3890bd2b28306f3b842b3daea390a561101174375a1c460bda --hash=sha256:fad3176f859b25869e60a8ed79957d4e3ed74a97a95e5f0cdcb91455f6c6d00e' > /tmp/req.txt; \
    pip download --quiet --no-deps --only-binary=:all: --platform "$platform" \
      --python-version 3.11 --require-hashes -r /tmp/req.txt -d /tmp/wheel; \
    python3 -c "import glob, zipfile; z = zipfile.ZipFile(glob.glob('/tmp/wheel/*.whl')[0]); n = next(n for n in z.namelist() if '/binaries/ffmpeg-' in n and not n.endswith(('.md', '.py'))); open('/ffmpeg', 'wb').write(z.read(n))"; \
    chmod 0755 /ffmpeg

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /app --create-home drama
COPY --from=ffmpeg /ffmpeg /usr/local/bin/ffmpeg
COPY --from=build /usr/local/bin/drama-server /usr/local/bin/drama-server
WORKDIR /app
USER drama
# A production image: without DATABASE_URL it refuses to start (ENVIRONMENT=development to
# try it on the in-memory store). It listens on every interface of the container.
ENV ENVIRONMENT=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    LOG_FORMAT=json \
    DATA_DIR=/app/data \
    ASSETS_DIR=/app/data/assets
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT} && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ' 200 ' <&3"]
ENTRYPOINT ["drama-server"]
CMD ["serve"]
