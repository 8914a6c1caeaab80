# syntax=docker/dockerfile:1
# zako-server image: `docker build -t zako-server:0.1.0 .` from the repository root.
#
# Three stages. `jsdeps` (Node's image) runs `npm ci` for zako_server/jsdeps: the pure
# JavaScript the V8 isolates load (sucrase and the lexers for the transform stage, buffer,
# whatwg-url... for the runtime). The builder, on the slim Python base, installs the
# project into a virtual environment at /opt/zako and puts those node_modules where the
# installed package looks for them (<package>/jsdeps/node_modules, as in a checkout); the
# final stage copies that environment alone and runs it as an unprivileged user: no Node
# in the image, the JavaScript is only text V8 reads. Every Python dependency (grpcio,
# mini-racer, psutil, protobuf) installs from manylinux wheels, so no stage needs a
# compiler. The same base in the last two matters: the venv's interpreter is a link to
# the base's /usr/local/bin/python3.11.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:22-bookworm-slim

FROM ${NODE_IMAGE} AS jsdeps
WORKDIR /jsdeps
COPY zako_server/jsdeps/package.json zako_server/jsdeps/package-lock.json ./
# --ignore-scripts: the packages are plain JavaScript; nothing needs to run at install.
RUN npm ci --ignore-scripts --omit=dev --no-audit --no-fund --loglevel=error

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/zako
WORKDIR /src
# Only what `pip install .` reads (.dockerignore keeps the rest out of the context).
COPY pyproject.toml README.md ./
COPY zako_server ./zako_server
COPY zako_sdk ./zako_sdk
COPY --from=jsdeps /jsdeps/node_modules /src/jsdeps-node_modules
# The last line fails the build unless the runtime libraries and the transform stage find
# their JavaScript in the installed package.
RUN /opt/zako/bin/pip install . \
    && package="$(/opt/zako/bin/python -c 'import pathlib, zako_server; print(pathlib.Path(zako_server.__file__).parent)')" \
    && mkdir -p "$package/jsdeps" \
    && mv /src/jsdeps-node_modules "$package/jsdeps/node_modules" \
    && /opt/zako/bin/python -m compileall -q /opt/zako/lib \
    && /opt/zako/bin/zako-server --help > /dev/null \
    && /opt/zako/bin/python -c 'from zako_server.worker.runtime import vendor; from zako_server.transform import bundle; vendor.bundle(); assert bundle.installed()'

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="zako-server" \
      org.opencontainers.image.description="Remote execution of JavaScript on a pool of V8 workers, over gRPC" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed, numeric, unprivileged user: Kubernetes' runAsNonRoot can only verify a numeric
# USER, and the Helm chart's securityContext uses the same 10001:10001.
RUN groupadd --system --gid 10001 zako \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin zako
COPY --from=builder /opt/zako /opt/zako
ENV PATH=/opt/zako/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ZAKO_LISTEN=0.0.0.0:50051
# ZAKO_LISTEN: every interface, but only inside the container; outside it the server's
# own default stays 127.0.0.1. Prometheus /metrics is off unless ZAKO_METRICS_LISTEN is
# set (the Helm chart sets 0.0.0.0:9090), so only the gRPC port is exposed here.
EXPOSE 50051
USER 10001:10001
# No HEALTHCHECK: Kubernetes ignores it and probes grpc.health.v1 natively (see the
# chart); with plain Docker, `grpcurl -plaintext HOST:50051 grpc.health.v1.Health/Check`
# from outside does the same without putting a probe client in the image.
# The server drains on SIGTERM (ZAKO_DRAIN_GRACE seconds): give `docker stop` more time,
# e.g. `docker stop -t 30`.
STOPSIGNAL SIGTERM
ENTRYPOINT ["zako-server"]
