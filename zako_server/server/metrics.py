"""Prometheus metrics on a separate HTTP port (`--metrics-listen`).

    scrape ──▶ ZakoCollector.collect() reads pool / admission / engine snapshots
           └─▶ RPC counters and latency histograms filled by RpcMetricsInterceptor

Almost everything is derived at scrape time from the snapshots Stats already uses, so
the hot path pays nothing; only the per-RPC figures are counted as calls happen. Labels
are bounded sets (method, status code, reason, state): never task ids, digests or
tenants, which would make series grow without bound. One registry per server, no
module-level globals, so several servers (tests, replicas) can live in one process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from zako_server.server.stats import BOUNDS, TaskFigures
from zako_server.server.stats import Histogram as DurationHistogram

if TYPE_CHECKING:
    from zako_server.server.app import ZakoServer

    _AioUnary = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
    _AioStream = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]

_RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


def _histogram_family(name: str, doc: str, h: DurationHistogram) -> HistogramMetricFamily:
    cumulative, total = [], 0
    for bound, count in zip((*BOUNDS, float("inf")), h.counts, strict=True):
        total += count
        cumulative.append((str(bound) if bound != float("inf") else "+Inf", total))
    return HistogramMetricFamily(name, doc, buckets=cumulative, sum_value=h.total)


class ZakoCollector:
    """Reads the server's state when Prometheus scrapes."""

    def __init__(self, server: ZakoServer) -> None:
        self.server = server

    def _transforms(self) -> Iterator[Metric]:
        """The transform stage's figures (issue 13): queue, busy, cache hits."""
        stage = self.server.engine.transforms
        if stage is None:
            return
        t = stage.stats
        yield GaugeMetricFamily(
            "zako_transform_queued", "Files waiting for a transform process", value=t.queued
        )
        yield GaugeMetricFamily(
            "zako_transform_busy", "Transform batches in progress", value=t.busy
        )
        yield GaugeMetricFamily(
            "zako_transform_processes", "Transform stage processes", value=t.processes
        )
        yield CounterMetricFamily(
            "zako_transform_cache_hits",
            "Files answered from the transform cache",
            value=t.cache_hits,
        )
        yield CounterMetricFamily(
            "zako_transform_cache_misses",
            "Files the transform stage had to transform",
            value=t.cache_misses,
        )
        yield GaugeMetricFamily(
            "zako_transform_cache_bytes", "Bytes the transform cache holds", value=t.cache_bytes
        )
        yield CounterMetricFamily(
            "zako_transform_files", "Files transformed", value=t.files_transformed
        )
        yield CounterMetricFamily(
            "zako_transform_seconds", "Time transform batches took", value=t.transform_seconds
        )

    def _cas(self) -> Iterator[Metric]:
        """The content-addressed store's figures (issue 15): bytes held, evictions, hits."""
        c = self.server.store.statistics()
        yield GaugeMetricFamily(
            "zako_cas_blobs", "Blobs the content-addressed store holds", value=c.blobs
        )
        yield GaugeMetricFamily(
            "zako_cas_bytes", "Bytes the content-addressed store holds", value=c.bytes
        )
        yield GaugeMetricFamily(
            "zako_cas_capacity_bytes", "The content-addressed store's budget", value=c.capacity
        )
        for name, doc, value in (
            ("evictions", "Blobs evicted (least recently used, or past their TTL)", c.evictions),
            ("hits", "Blob lookups that found the blob", c.hits),
            ("misses", "Blob lookups that did not", c.misses),
            ("uploads", "Blobs stored", c.uploads),
            ("uploaded_bytes", "Bytes of blobs stored", c.uploaded_bytes),
            ("missing_rejections", "Tasks rejected for a missing blob", c.missing_rejections),
        ):
            yield CounterMetricFamily(f"zako_cas_{name}", doc, value=value)

    def _action_cache(self) -> Iterator[Metric]:
        """The action cache's figures (issue 15): what it holds, hits, joins."""
        cache = self.server.engine.action_cache
        if cache is None:
            return
        a = cache.statistics()
        yield GaugeMetricFamily(
            "zako_action_cache_entries", "Task outcomes the action cache holds", value=a.entries
        )
        yield GaugeMetricFamily(
            "zako_action_cache_bytes", "Bytes the action cache holds", value=a.bytes
        )
        yield GaugeMetricFamily(
            "zako_action_cache_capacity_bytes", "The action cache's budget", value=a.capacity
        )
        for name, doc, value in (
            ("hits", "Tasks answered from the action cache", a.hits),
            ("misses", "Cacheable tasks that had to run", a.misses),
            ("joins", "Tasks that took the outcome of an identical task in flight", a.joins),
            ("stores", "Outcomes stored in the action cache", a.stores),
            ("evictions", "Outcomes evicted from the action cache", a.evictions),
        ):
            yield CounterMetricFamily(f"zako_action_cache_{name}", doc, value=value)

    def _code_cache(self) -> Iterator[Metric]:
        """The workers' code cache (issue 15): texts kept by digest, compiled wrappers."""
        c = self.server.engine.pool.code_cache
        for name, doc, value in (
            ("source_hits", "Module files a worker already held when a task needed them",
             c.source_hits),
            ("source_misses", "Module files sent to a worker with a task", c.source_misses),
            ("source_bytes_sent", "Bytes of module text sent to workers", c.source_bytes_sent),
            ("compiled_hits", "Modules loaded from a wrapper a warm isolate had compiled",
             c.compiled_hits),
            ("compiled_misses", "Modules a task had to compile", c.compiled_misses),
        ):  # fmt: skip
            yield CounterMetricFamily(f"zako_code_cache_{name}", doc, value=value)

    def collect(self) -> Iterator[Metric]:
        pool = self.server.pool.statistics()
        adm = self.server.admission.statistics()
        tasks = TaskFigures.of(self.server.engine.counters)
        queue = GaugeMetricFamily(
            "zako_queue_depth", "Tasks waiting for a worker, by priority", labels=["priority"]
        )
        for priority, depth in sorted(adm.depth_by_priority.items()):
            queue.add_metric([str(priority)], depth)
        yield queue
        yield GaugeMetricFamily(
            "zako_queue_length", "Tasks waiting for a worker (all)", value=adm.queued
        )
        yield from self._transforms()
        yield from self._action_cache()
        yield from self._cas()
        yield from self._code_cache()
        yield GaugeMetricFamily(
            "zako_tasks_in_flight", "Tasks running on workers", value=adm.running
        )
        workers = GaugeMetricFamily("zako_workers", "Worker processes by state", labels=["state"])
        for state, value in (("busy", pool.busy), ("idle", pool.idle), ("starting", pool.starting)):
            workers.add_metric([state], value)
        yield workers
        lifecycle = CounterMetricFamily(
            "zako_worker_events", "Worker lifecycle events", labels=["event"]
        )
        for event, value in (
            ("started", pool.started_total),
            ("crashed", pool.crashed_total),
            ("reclaimed", pool.reclaimed_total),
        ):
            lifecycle.add_metric([event], value)
        yield lifecycle
        outcomes = CounterMetricFamily("zako_tasks", "Tasks by outcome", labels=["outcome"])
        outcomes.add_metric(["admitted"], tasks.accepted)
        outcomes.add_metric(["completed"], tasks.completed)
        outcomes.add_metric(["failed"], tasks.failed)
        outcomes.add_metric(["cancelled"], tasks.cancelled)
        outcomes.add_metric(["rejected"], tasks.rejected)
        yield outcomes
        failed = CounterMetricFamily(
            "zako_tasks_failed", "Failed tasks by reason", labels=["reason"]
        )
        for reason, value in sorted(tasks.failed_by_reason.items()):
            failed.add_metric([reason], value)
        yield failed
        rejected = CounterMetricFamily(
            "zako_tasks_rejected", "Rejected tasks by status code", labels=["code"]
        )
        for code, value in sorted(tasks.rejected_by_reason.items()):
            rejected.add_metric([code], value)
        yield rejected
        resources = GaugeMetricFamily(
            "zako_resource", "Admission resources", labels=["resource", "measure"]
        )
        for name, use in sorted(adm.resources.items()):
            resources.add_metric([name, "capacity"], use.capacity)
            resources.add_metric([name, "in_use"], use.in_use)
            resources.add_metric([name, "queued_demand"], use.queued_demand)
        yield resources
        yield _histogram_family(
            "zako_task_wait_seconds", "Time tasks waited in the queue", adm.queue_wait
        )
        yield _histogram_family(
            "zako_task_run_seconds", "Time tasks ran on a worker", self.server.engine.run_time
        )


class RpcMetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts every RPC by method and final status code, and times it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "zako_rpc_requests",
            "RPCs by method and status code",
            ["method", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "zako_rpc_duration_seconds",
            "RPC latency by method",
            ["method"],
            buckets=_RPC_BUCKETS,
            registry=registry,
        )

    def _done(
        self,
        method: str,
        started: float,
        context: grpc.aio.ServicerContext[Any, Any],
        error: BaseException | None,
    ) -> None:
        code = context.code()
        if code is None:
            code = grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN
        if error is not None and code == grpc.StatusCode.OK:
            cancelled = isinstance(error, asyncio.CancelledError)
            code = grpc.StatusCode.CANCELLED if cancelled else grpc.StatusCode.UNKNOWN
        name = code.name if isinstance(code, grpc.StatusCode) else str(code)
        self.requests.labels(method, name).inc()
        self.latency.labels(method).observe(time.perf_counter() - started)

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        full_method = handler_call_details.method
        method = full_method.rsplit("/", 1)[-1]
        if handler is None or not full_method.startswith("/zako."):
            return handler
        # grpc's stubs type a handler's behaviours as the sync API's; under grpc.aio they
        # are coroutine functions (unary) and async generators (streams).
        if handler.unary_unary is not None:
            inner = cast("_AioUnary", handler.unary_unary)

            async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                started, error = time.perf_counter(), None
                try:
                    return await inner(request, context)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    self._done(method, started, context, error)

            return grpc.unary_unary_rpc_method_handler(
                unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_stream is not None:
            inner_stream = cast("_AioStream", handler.stream_stream)

            async def stream(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                started, error = time.perf_counter(), None
                try:
                    async for response in inner_stream(requests, context):
                        yield response
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    self._done(method, started, context, error)

            return grpc.stream_stream_rpc_method_handler(
                stream, handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_unary is not None:  # WriteBlob: chunks in, one reply
            inner_upload = cast("_AioUnary", handler.stream_unary)

            async def upload(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                started, error = time.perf_counter(), None
                try:
                    return await inner_upload(requests, context)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    self._done(method, started, context, error)

            return grpc.stream_unary_rpc_method_handler(
                upload, handler.request_deserializer, handler.response_serializer
            )
        return handler


class Metrics:
    """The server's registry, its interceptor and its HTTP endpoint."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.interceptor = RpcMetricsInterceptor(self.registry)
        self._http: Any = None
        self.port = 0

    def attach(self, server: ZakoServer) -> None:
        self.registry.register(ZakoCollector(server))

    def serve(self, listen: str) -> int:
        host, _, port = listen.rpartition(":")
        http, _thread = start_http_server(
            int(port), addr=host or "127.0.0.1", registry=self.registry
        )
        self._http = http
        self.port = http.server_address[1]
        return self.port

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
