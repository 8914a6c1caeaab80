"""Summing the Stats of several replicas into one StatsResponse (for `stats_all()`).

    replica A StatsResponse ─┐
    replica B StatsResponse ─┼─ sum_stats ─▶ one StatsResponse, same shape, summed
    replica C StatsResponse ─┘

The total keeps the shape of a single replica's answer so that every reader of one
(`jq .pool.busy`, dashboards, the CLI) reads the cluster the same way. It sums the wire
messages (their maps default missing keys to zero, their copies are cheap) and the client
converts the total to a `zako_sdk.stats.Stats` like any replica's answer. Percentiles are
re-estimated from the summed buckets with the server's own `quantile`: summing the
replicas' percentiles would mean nothing. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from google.protobuf.message import Message

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.stats import quantile

__all__ = ["sum_stats"]

_POOL = (
    "min_workers",
    "max_workers",
    "live",
    "busy",
    "idle",
    "started_total",
    "crashed_total",
    "reclaimed_total",
)
_QUEUE = ("depth", "capacity", "running", "queued_bytes", "capacity_bytes")
_TASKS = ("accepted", "completed", "failed", "cancelled", "rejected")
_TASK_MAPS = ("failed_by_reason", "rejected_by_reason")
# The caches (#15): every number is a count or a size, so the cluster's is the sum (hit
# rates are derived from the sums, as a cluster-wide rate must be).
_CAS = (
    "blobs",
    "bytes",
    "capacity_bytes",
    "evictions",
    "hits",
    "misses",
    "uploads",
    "uploaded_bytes",
    "missing_rejections",
)
_ACTION_CACHE = (
    "entries",
    "bytes",
    "capacity_bytes",
    "hits",
    "misses",
    "joins",
    "stores",
    "evictions",
)
_CODE_CACHE = (
    "source_hits",
    "source_misses",
    "source_bytes_sent",
    "compiled_hits",
    "compiled_misses",
)

M = TypeVar("M")
Msg = TypeVar("Msg", bound=Message)


def _add_fields(total: Any, part: Any, names: Iterable[str]) -> None:
    for name in names:
        setattr(total, name, getattr(total, name) + getattr(part, name))


def _add_map(total: Any, part: Any) -> None:
    for key, value in part.items():
        total[key] = total[key] + value  # proto maps default missing keys to zero


def _rows(
    parts: Sequence[Iterable[M]],
    key: Callable[[M], str],
    add: Callable[[M, M], None],
    make: Callable[[M], M],
) -> list[M]:
    """Rows of repeated fields summed by `key`, in order of first appearance."""
    rows: dict[str, M] = {}
    for part in parts:
        for row in part:
            if key(row) in rows:
                add(rows[key(row)], row)
            else:
                rows[key(row)] = make(row)
    return list(rows.values())


def _histogram(parts: Sequence[pb.Histogram]) -> pb.Histogram:
    present = [h for h in parts if h.count or h.counts]
    if not present:
        return pb.Histogram()
    bounds = list(present[0].bounds_seconds)
    total = pb.Histogram(bounds_seconds=bounds, counts=[0] * (len(bounds) + 1))
    for h in present:
        total.count += h.count
        total.sum_seconds += h.sum_seconds
        if list(h.bounds_seconds) == bounds and len(h.counts) == len(total.counts):
            total.counts[:] = [a + b for a, b in zip(total.counts, h.counts, strict=True)]
    total.p50_seconds = quantile(bounds, total.counts, 0.5)
    total.p90_seconds = quantile(bounds, total.counts, 0.9)
    total.p99_seconds = quantile(bounds, total.counts, 0.99)
    return total


def _versions(parts: Sequence[pb.VersionInfo]) -> pb.VersionInfo:
    # Different versions side by side (a rolling upgrade) are worth seeing: list each once.
    total = pb.VersionInfo()
    for name in ("server", "v8", "mini_racer", "python", "protocol"):
        values = dict.fromkeys(getattr(v, name) for v in parts if getattr(v, name))
        setattr(total, name, ",".join(values))
    return total


def _copy(message: Msg) -> Msg:
    copy = type(message)()
    copy.CopyFrom(message)
    return copy


def sum_stats(parts: Sequence[pb.StatsResponse]) -> pb.StatsResponse:
    """One StatsResponse that sums `parts` (see ClusterStats for what "sum" means per field).

    total = sum_stats([a, b])
    assert total.tasks.completed == a.tasks.completed + b.tasks.completed
    """
    total = pb.StatsResponse()
    for part in parts:
        _add_fields(total.pool, part.pool, _POOL)
        _add_fields(total.queue, part.queue, _QUEUE)
        _add_map(total.queue.depth_by_priority, part.queue.depth_by_priority)
        _add_fields(total.tasks, part.tasks, _TASKS)
        for name in _TASK_MAPS:
            _add_map(getattr(total.tasks, name), getattr(part.tasks, name))
        _add_fields(total.cas, part.cas, _CAS)
        _add_fields(total.action_cache, part.action_cache, _ACTION_CACHE)
        total.action_cache.enabled |= part.action_cache.enabled
        _add_fields(total.code_cache, part.code_cache, _CODE_CACHE)
        if part.time.ToNanoseconds() > total.time.ToNanoseconds():
            total.time.CopyFrom(part.time)
        if part.uptime.ToNanoseconds() > total.uptime.ToNanoseconds():
            total.uptime.CopyFrom(part.uptime)

    def add_resource(row: pb.ResourceStats, more: pb.ResourceStats) -> None:
        _add_fields(row, more, ("capacity", "in_use", "queued_demand"))

    def add_tenant(row: pb.TenantStats, more: pb.TenantStats) -> None:
        _add_fields(row, more, ("running", "queued", "rejected", "accepted"))

    total.resources.extend(
        _rows([p.resources for p in parts], lambda r: r.name, add_resource, _copy)
    )
    total.tenants.extend(_rows([p.tenants for p in parts], lambda t: t.tenant, add_tenant, _copy))
    total.queue_wait.CopyFrom(_histogram([p.queue_wait for p in parts]))
    total.run_time.CopyFrom(_histogram([p.run_time for p in parts]))
    total.versions.CopyFrom(_versions([p.versions for p in parts]))
    return total
