"""The Stats and Capabilities replies, read from the figures the server keeps.

    engine.counters, run_time ─┐
    pool.statistics, workers ──┼─▶ stats_reply ─▶ pb.StatsResponse
    admission.statistics ──────┤
    transform stage, machine ──┘
    Settings ─────────────────────▶ capabilities_reply ─▶ pb.CapabilitiesResponse

Pure message building, kept apart from the servicer (service.py) so that the RPCs read
as what they check and whom they answer; nothing here sees a gRPC context or a status.
"""

from __future__ import annotations

import os
import time

import psutil

from zako_sdk.proto.zako.v1 import cas_pb2
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_server.server.cas import ContentStore
from zako_server.server.engine import Engine
from zako_server.server.events import ERROR_TEXT_BYTES, duration, heap_usage, timestamp
from zako_server.server.security import Identity
from zako_server.server.settings import Settings
from zako_server.server.stats import BOUNDS, Histogram, TaskFigures
from zako_server.server.validation import (
    BUILTIN_MODULES,
    CONTEXT_NAMES,
    PRIORITY_MAX,
    PRIORITY_MIN,
)
from zako_server.server.worker_handle import WorkerHandle


def histogram(h: Histogram) -> pb.Histogram:
    """A duration histogram with its quantiles estimated here, so clients need not."""
    return pb.Histogram(
        bounds_seconds=BOUNDS,
        counts=h.counts,
        count=h.count,
        sum_seconds=h.total,
        p50_seconds=h.quantile(0.5),
        p90_seconds=h.quantile(0.9),
        p99_seconds=h.quantile(0.99),
    )


def transform_stats(engine: Engine) -> pb.TransformStats | None:
    """The transform stage's figures, or None when this server has no stage."""
    stage = engine.transforms
    if stage is None:
        return None
    t = stage.stats
    return pb.TransformStats(
        processes=t.processes,
        queued=t.queued,
        busy=t.busy,
        cache_hits=t.cache_hits,
        cache_misses=t.cache_misses,
        cache_entries=t.cache_entries,
        cache_bytes=t.cache_bytes,
        files_transformed=t.files_transformed,
        transform_time=duration(t.transform_seconds),
    )


def cas_stats(store: ContentStore | None) -> cas_pb2.CasStats | None:
    """The content-addressed store's figures (cas.py), or None without a store."""
    if store is None:
        return None
    c = store.statistics()
    return cas_pb2.CasStats(
        blobs=c.blobs,
        bytes=c.bytes,
        capacity_bytes=c.capacity,
        evictions=c.evictions,
        hits=c.hits,
        misses=c.misses,
        uploads=c.uploads,
        uploaded_bytes=c.uploaded_bytes,
        missing_rejections=c.missing_rejections,
    )


def action_cache_stats(engine: Engine) -> cas_pb2.ActionCacheStats:
    """The action cache's figures (all zero, not enabled, for an engine without one)."""
    cache = engine.action_cache
    if cache is None:
        return cas_pb2.ActionCacheStats()
    a = cache.statistics()
    return cas_pb2.ActionCacheStats(
        enabled=a.enabled,
        entries=a.entries,
        bytes=a.bytes,
        capacity_bytes=a.capacity,
        hits=a.hits,
        misses=a.misses,
        joins=a.joins,
        stores=a.stores,
        evictions=a.evictions,
    )


def code_cache_stats(engine: Engine) -> cas_pb2.CodeCacheStats:
    """The workers' code cache since start, summed by the pool (server/code_mirror.py)."""
    c = engine.pool.code_cache
    return cas_pb2.CodeCacheStats(
        source_hits=c.source_hits,
        source_misses=c.source_misses,
        source_bytes_sent=c.source_bytes_sent,
        compiled_hits=c.compiled_hits,
        compiled_misses=c.compiled_misses,
    )


def worker_stats(worker: WorkerHandle) -> pb.WorkerStats:
    """One worker process as Stats shows it."""
    return pb.WorkerStats(
        worker_id=worker.id,
        pid=worker.pid,
        state=worker.state,
        tasks_run=worker.tasks_run,
        rss_bytes=worker.rss(),
        last_heap=heap_usage(worker.last_heap),
    )


def system_stats(settings: Settings, process: psutil.Process) -> pb.SystemStats:
    """The machine as this server sees it (cgroup-aware effective sizes) and its own RSS."""
    machine = settings.machine
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return pb.SystemStats(
        effective_cpus=machine.cpus if machine else 0.0,
        effective_memory_bytes=machine.memory_bytes if machine else 0,
        cpu_percent=psutil.cpu_percent(interval=None),
        memory_available_bytes=int(psutil.virtual_memory().available),
        server_rss_bytes=int(process.memory_info().rss),
        load_average_1m=load,
    )


def stats_reply(
    engine: Engine,
    settings: Settings,
    identity: Identity,
    started_at: float,
    process: psutil.Process,
    versions: pb.VersionInfo,
    *,
    cas: ContentStore | None = None,
) -> pb.StatsResponse:
    """The Stats reply: every figure the engine, pool and admission keep, with other
    tenants' rows shown only to an admin."""
    pool = engine.pool.statistics()
    admission = engine.admission.statistics()
    visible = {
        name: use
        for name, use in admission.tenants.items()
        if identity.is_admin or name == identity.tenant
    }
    tasks = TaskFigures.of(engine.counters)
    now = time.time()
    return pb.StatsResponse(
        time=timestamp(now),
        uptime=duration(now - started_at),
        pool=pb.PoolStats(
            min_workers=pool.min_workers,
            max_workers=pool.max_workers,
            live=pool.live,
            busy=pool.busy,
            idle=pool.idle,
            started_total=pool.started_total,
            crashed_total=pool.crashed_total,
            reclaimed_total=pool.reclaimed_total,
            workers=[worker_stats(w) for w in engine.pool.workers()],
        ),
        queue=pb.QueueStats(
            depth=admission.queued,
            capacity=admission.capacity,
            running=admission.running,
            depth_by_priority=admission.depth_by_priority,
            queued_bytes=admission.queued_bytes,
            capacity_bytes=admission.capacity_bytes,
        ),
        resources=[
            pb.ResourceStats(
                name=name,
                capacity=use.capacity,
                in_use=use.in_use,
                queued_demand=use.queued_demand,
            )
            for name, use in admission.resources.items()
        ],
        tenants=[
            pb.TenantStats(
                tenant=name,
                running=use.running,
                queued=use.queued,
                rejected=use.rejected,
                accepted=use.accepted,
            )
            for name, use in visible.items()
        ],
        queue_wait=histogram(admission.queue_wait),
        run_time=histogram(engine.run_time),
        system=system_stats(settings, process),
        transforms=transform_stats(engine),
        cas=cas_stats(cas),
        action_cache=action_cache_stats(engine),
        code_cache=code_cache_stats(engine),
        tasks=pb.TaskCounters(
            accepted=tasks.accepted,
            completed=tasks.completed,
            failed=tasks.failed,
            cancelled=tasks.cancelled,
            rejected=tasks.rejected,
            failed_by_reason=tasks.failed_by_reason,
            rejected_by_reason=tasks.rejected_by_reason,
        ),
        versions=versions,
    )


def capabilities_reply(settings: Settings, versions: pb.VersionInfo) -> pb.CapabilitiesResponse:
    """The Capabilities reply: this server's limits and what a task may ask for."""
    s = settings
    capacity = s.capacities()
    return pb.CapabilitiesResponse(
        limits=pb.Limits(
            max_message_bytes=s.max_message_bytes,
            max_source_bytes=s.max_source_bytes,
            max_modules=s.max_modules,
            max_input_bytes=s.max_input_bytes,
            max_result_bytes=s.max_result_bytes,
            max_log_bytes=s.max_log_bytes,
            min_timeout=duration(s.min_timeout),
            default_timeout=duration(s.default_timeout),
            max_timeout=duration(s.max_timeout),
            default_memory_bytes=s.default_memory,
            max_memory_bytes=s.max_memory,
            max_tasks_per_stream=s.max_tasks_per_stream,
            max_log_lines=s.max_log_lines,
            stream_outbox_bytes=s.stream_outbox_bytes,
            max_error_text_bytes=ERROR_TEXT_BYTES,
            max_tree_bytes=s.max_tree_bytes,
            max_blob_bytes=s.max_blob_bytes,
            cas_capacity_bytes=s.cas_bytes,
        ),
        context_kinds=sorted(CONTEXT_NAMES),
        priority=pb.PriorityRange(min=PRIORITY_MIN, max=PRIORITY_MAX),
        builtin_modules=list(BUILTIN_MODULES),
        system_access_allowed=s.allow_system_access,
        versions=versions,
        resource_capacity=capacity,
        isolate_reuse=s.isolate_reuse == "tenant",
        action_cache=s.action_cache,
        submit_batching=True,  # SubmitRequest.tasks/.options, SubmitResponse.batch (#16)
    )
