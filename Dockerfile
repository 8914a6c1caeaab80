# syntax=docker/dockerfile:1
# zako-server image: `docker build -t zako-server:0.1.0 .` from the repository root.
#
# Two stages on the same slim Python base: the builder installs the project into a
# virtual environment at /opt/zako; the final stage copies that environment alone and
# runs it as an unprivileged user. Every dependency (grpcio, mini-racer, psutil,
# protobuf) installs from manylinux wheels, so neither stage needs a compiler.
# The same base in both stages matters: the venv's interpreter is a link to the base's
# /usr/local/bin/python3.11.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

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
RUN /opt/zako/bin/pip install . \
    && /opt/zako/bin/python -m compileall -q /opt/zako/lib \
    && /opt/zako/bin/zako-server --help > /dev/null

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
