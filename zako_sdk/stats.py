"""What a server reports about its workers: Stats, and the BroadcastGC report.

    StatsResponse        ──Stats.from_proto────▶ Stats (pool, queue, tasks, latency, …)
    BroadcastGCResponse  ──GCReport.from_proto─▶ GCReport

Frozen dataclasses like the rest of `zako_sdk.models`, built once where the answer
arrives, so callers never handle generated protobuf classes. Field names are the
proto's (`stats.pool.busy`, `stats.tasks.failed_by_reason`), so the proto comments are
their documentation and `zako stats --json | jq .pool.busy` reads the same path; only
the well-known types change shape: a Duration is float seconds, a Timestamp an aware
datetime (None if unset), an unset message None. (What a server accepts is in
`zako_sdk.capabilities`.)

`quantile` is the one estimate of a percentile from histogram buckets: the server uses
it for its own p50/p90/p99 and `stats_all()` for the summed buckets of a cluster.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zako_sdk.cache_stats import ActionCacheStats, CasStats, CodeCacheStats
from zako_sdk.models import HeapUsage, _seconds, _time
from zako_sdk.proto.zako.v1 import executor_pb2 as pb

__all__ = [
    "ActionCacheStats",
    "CasStats",
    "CodeCacheStats",
    "GCReport",
    "Histogram",
    "PoolStats",
    "QueueStats",
    "ResourceStats",
    "Stats",
    "SystemStats",
    "TaskCounters",
    "TenantStats",
    "VersionInfo",
    "WorkerGC",
    "WorkerStats",
    "quantile",
]


def quantile(bounds: Sequence[float], counts: Sequence[int], q: float) -> float:
    """Estimate the q-quantile (0..1) of a histogram by interpolating inside its bucket.

    `bounds` are the buckets' ascending upper bounds; `counts` has one more entry, for
    the unbounded last bucket (whose upper edge is taken as ten times the last bound).
    Linear interpolation within a bucket is what Prometheus-style histograms give too.

        quantile([1.0, 2.0], [0, 4, 0], 0.5)  # 1.5: half-way through the (1, 2] bucket
    """
    count = sum(counts)
    if not count or not bounds:
        return 0.0
    rank, seen = q * count, 0
    for index, n in enumerate(counts):
        if n and seen + n >= rank:
            low = bounds[index - 1] if index > 0 else 0.0
            high = bounds[index] if index < len(bounds) else bounds[-1] * 10
            return low + (high - low) * max(rank - seen, 0.0) / n
        seen += n
    return bounds[-1]


def _json_ready(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(item) for item in value]
    return value


class JsonView:
    """`to_dict()` for the top-level answers (Stats, GCReport, Capabilities): field names
    as here, times as ISO 8601; what `zako stats --json` and friends print."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, e.g. for `zako stats --json`."""
        view: dict[str, Any] = _json_ready(dataclasses.asdict(self))  # type: ignore[call-overload]
        return view


def _heap(message: Any, name: str) -> HeapUsage | None:
    return HeapUsage.from_proto(getattr(message, name)) if message.HasField(name) else None


@dataclass(frozen=True)
class VersionInfo:
    """Versions of the moving parts; in a cluster total, each distinct value once, comma-joined."""

    server: str = ""
    v8: str = ""
    mini_racer: str = ""
    python: str = ""
    protocol: str = ""

    @classmethod
    def from_proto(cls, v: pb.VersionInfo) -> VersionInfo:
        return cls(v.server, v.v8, v.mini_racer, v.python, v.protocol)


@dataclass(frozen=True)
class WorkerStats:
    """One worker process; `last_heap` is None until it has finished a task."""

    worker_id: str = ""
    pid: int = 0
    state: str = ""
    tasks_run: int = 0
    rss_bytes: int = 0
    last_heap: HeapUsage | None = None

    @classmethod
    def from_proto(cls, w: pb.WorkerStats) -> WorkerStats:
        return cls(w.worker_id, w.pid, w.state, w.tasks_run, w.rss_bytes, _heap(w, "last_heap"))


@dataclass(frozen=True)
class PoolStats:
    """The worker pool: bounds, counts now, totals since start, and each live worker."""

    min_workers: int = 0
    max_workers: int = 0
    live: int = 0
    busy: int = 0
    idle: int = 0
    started_total: int = 0
    crashed_total: int = 0
    reclaimed_total: int = 0
    workers: tuple[WorkerStats, ...] = ()

    @classmethod
    def from_proto(cls, p: pb.PoolStats) -> PoolStats:
        return cls(
            p.min_workers,
            p.max_workers,
            p.live,
            p.busy,
            p.idle,
            p.started_total,
            p.crashed_total,
            p.reclaimed_total,
            tuple(WorkerStats.from_proto(w) for w in p.workers),
        )


@dataclass(frozen=True)
class SystemStats:
    """The machine as the server sees it (cgroup limits applied); zeros in a cluster total."""

    effective_cpus: float = 0.0
    effective_memory_bytes: int = 0
    cpu_percent: float = 0.0
    memory_available_bytes: int = 0
    server_rss_bytes: int = 0
    load_average_1m: float = 0.0

    @classmethod
    def from_proto(cls, s: pb.SystemStats) -> SystemStats:
        return cls(
            s.effective_cpus,
            s.effective_memory_bytes,
            s.cpu_percent,
            s.memory_available_bytes,
            s.server_rss_bytes,
            s.load_average_1m,
        )


@dataclass(frozen=True)
class QueueStats:
    """The admission queue: waiting tasks (by priority) and bytes against their caps."""

    depth: int = 0
    capacity: int = 0
    running: int = 0
    depth_by_priority: Mapping[int, int] = field(default_factory=dict)
    queued_bytes: int = 0
    capacity_bytes: int = 0

    @classmethod
    def from_proto(cls, q: pb.QueueStats) -> QueueStats:
        return cls(
            q.depth,
            q.capacity,
            q.running,
            dict(q.depth_by_priority),
            q.queued_bytes,
            q.capacity_bytes,
        )


@dataclass(frozen=True)
class ResourceStats:
    """One resource admission accounts for: "cpu" (millicores), "memory" (bytes), extras."""

    name: str
    capacity: float = 0.0
    in_use: float = 0.0
    queued_demand: float = 0.0

    @classmethod
    def from_proto(cls, r: pb.ResourceStats) -> ResourceStats:
        return cls(r.name, r.capacity, r.in_use, r.queued_demand)


@dataclass(frozen=True)
class TenantStats:
    """One tenant's share: tasks now, and totals since the server started."""

    tenant: str
    running: int = 0
    queued: int = 0
    rejected: int = 0
    accepted: int = 0

    @classmethod
    def from_proto(cls, t: pb.TenantStats) -> TenantStats:
        return cls(t.tenant, t.running, t.queued, t.rejected, t.accepted)


@dataclass(frozen=True)
class Histogram:
    """A distribution of durations in seconds; `counts` has one more entry than the bounds."""

    bounds_seconds: tuple[float, ...] = ()
    counts: tuple[int, ...] = ()
    count: int = 0
    sum_seconds: float = 0.0
    p50_seconds: float = 0.0
    p90_seconds: float = 0.0
    p99_seconds: float = 0.0

    @classmethod
    def from_proto(cls, h: pb.Histogram) -> Histogram:
        return cls(
            tuple(h.bounds_seconds),
            tuple(h.counts),
            h.count,
            h.sum_seconds,
            h.p50_seconds,
            h.p90_seconds,
            h.p99_seconds,
        )

    @property
    def mean_seconds(self) -> float:
        return self.sum_seconds / self.count if self.count else 0.0

    def quantile(self, q: float) -> float:
        """Any percentile from the buckets, not only the three the server sends."""
        return quantile(self.bounds_seconds, self.counts, q)


@dataclass(frozen=True)
class TaskCounters:
    """Tasks by outcome since start; failures by reason name, rejections by status code name."""

    accepted: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    rejected: int = 0
    failed_by_reason: Mapping[str, int] = field(default_factory=dict)
    rejected_by_reason: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_proto(cls, t: pb.TaskCounters) -> TaskCounters:
        return cls(
            t.accepted,
            t.completed,
            t.failed,
            t.cancelled,
            t.rejected,
            dict(t.failed_by_reason),
            dict(t.rejected_by_reason),
        )


@dataclass(frozen=True)
class Stats(JsonView):
    """A snapshot of one server (or, from `stats_all()`, the sum of several).

        stats = client.stats()
        print(stats.pool.busy, stats.queue.depth, stats.run_time.p99_seconds)

    `time` is when the server took it (None in a hand-made empty Stats); `uptime` is
    in seconds. `cas`, `action_cache` and `code_cache` are the caches of issue #15; their
    JSON view adds the derived hit rates (fractions) next to the proto's counters.
    """

    time: dt.datetime | None = None
    uptime: float = 0.0
    pool: PoolStats = field(default_factory=PoolStats)
    queue: QueueStats = field(default_factory=QueueStats)
    tasks: TaskCounters = field(default_factory=TaskCounters)
    versions: VersionInfo = field(default_factory=VersionInfo)
    resources: tuple[ResourceStats, ...] = ()
    tenants: tuple[TenantStats, ...] = ()
    queue_wait: Histogram = field(default_factory=Histogram)
    run_time: Histogram = field(default_factory=Histogram)
    system: SystemStats = field(default_factory=SystemStats)
    cas: CasStats = field(default_factory=CasStats)
    action_cache: ActionCacheStats = field(default_factory=ActionCacheStats)
    code_cache: CodeCacheStats = field(default_factory=CodeCacheStats)

    @classmethod
    def from_proto(cls, s: pb.StatsResponse) -> Stats:
        return cls(
            _time(s, "time"),
            _seconds(s.uptime),
            PoolStats.from_proto(s.pool),
            QueueStats.from_proto(s.queue),
            TaskCounters.from_proto(s.tasks),
            VersionInfo.from_proto(s.versions),
            tuple(ResourceStats.from_proto(r) for r in s.resources),
            tuple(TenantStats.from_proto(t) for t in s.tenants),
            Histogram.from_proto(s.queue_wait),
            Histogram.from_proto(s.run_time),
            SystemStats.from_proto(s.system),
            CasStats.from_proto(s.cas),
            ActionCacheStats.from_proto(s.action_cache),
            CodeCacheStats.from_proto(s.code_cache),
        )

    def to_dict(self) -> dict[str, Any]:
        """JsonView's, plus each cache's hit rate (what an operator looks for first)."""
        view = super().to_dict()
        view["cas"]["hit_rate"] = self.cas.hit_rate
        view["action_cache"]["hit_rate"] = self.action_cache.hit_rate
        view["code_cache"]["source_hit_rate"] = self.code_cache.source_hit_rate
        view["code_cache"]["compiled_hit_rate"] = self.code_cache.compiled_hit_rate
        return view


@dataclass(frozen=True)
class WorkerGC:
    """One worker's V8 heap and process RSS around a full collection."""

    worker_id: str
    before: HeapUsage = field(default_factory=HeapUsage)
    after: HeapUsage = field(default_factory=HeapUsage)
    rss_before_bytes: int = 0
    rss_after_bytes: int = 0

    @classmethod
    def from_proto(cls, w: pb.WorkerGC) -> WorkerGC:
        return cls(
            w.worker_id,
            HeapUsage.from_proto(w.before),
            HeapUsage.from_proto(w.after),
            w.rss_before_bytes,
            w.rss_after_bytes,
        )


@dataclass(frozen=True)
class GCReport(JsonView):
    """What `gc()` did: each live worker's collection and the V8 heap bytes freed in all.

    print(client.gc().total_freed_bytes)
    """

    workers: tuple[WorkerGC, ...] = ()
    total_freed_bytes: int = 0

    @classmethod
    def from_proto(cls, r: pb.BroadcastGCResponse) -> GCReport:
        return cls(tuple(WorkerGC.from_proto(w) for w in r.workers), r.total_freed_bytes)
