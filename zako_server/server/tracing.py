"""OpenTelemetry tracing: RPC spans from opentelemetry-instrumentation-grpc, plus spans for
the admission wait and the execution on a worker (engine.py opens them).

Off by default. `--tracing` turns it on; the exporter follows the standard
`OTEL_TRACES_EXPORTER` variable (`console`, or `otlp` when the OTLP exporter package is
installed), and the SDK reads the other `OTEL_*` variables itself. W3C trace context
(`traceparent`) in the request metadata makes the server's spans children of the
caller's. The provider is per server, never installed globally, so tests and embedders
pass their own (e.g. with an in-memory exporter).
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter


def _exporter(name: str) -> SpanExporter:
    if name in {"", "console"}:
        return ConsoleSpanExporter()
    if name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore
                OTLPSpanExporter,
            )
        except ImportError as exc:
            raise ValueError(
                "OTEL_TRACES_EXPORTER=otlp needs the package opentelemetry-exporter-otlp-proto-grpc"
            ) from exc
        return OTLPSpanExporter()
    raise ValueError(f"OTEL_TRACES_EXPORTER={name!r} is not supported (console, otlp)")


def provider_from_env(env: Mapping[str, str], version: str) -> TracerProvider:
    """A provider exporting where OTEL_TRACES_EXPORTER says (read once, at start-up)."""
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": env.get("OTEL_SERVICE_NAME", "zako"), "service.version": version}
        )
    )
    provider.add_span_processor(BatchSpanProcessor(_exporter(env.get("OTEL_TRACES_EXPORTER", ""))))
    return provider


class Tracing:
    """The server's tracer (a no-op one when tracing is off) and its gRPC interceptor."""

    def __init__(self, provider: trace.TracerProvider | None) -> None:
        self.provider = provider
        source = provider if provider is not None else trace.NoOpTracerProvider()
        self.tracer = source.get_tracer("zako_server")

    def interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        if self.provider is None:
            return []
        return [aio_server_interceptor(tracer_provider=self.provider)]

    def shutdown(self) -> None:
        shutdown = getattr(self.provider, "shutdown", None)
        if shutdown is not None:
            shutdown()
