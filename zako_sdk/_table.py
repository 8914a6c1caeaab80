"""Plain-text tables of a Stats snapshot, for `zako stats` (and `--watch`).

    Stats         ──render_stats──▶ "WORKERS  live 1 (min 1, max 2) …\\n  ID  PID …"
    ClusterStats  ──render_cluster─▶ the total's table + one summary line per replica

Pure: no I/O, no terminal codes (the CLI decides whether to clear the screen), so it is
tested from hand-built values. Fixed-width columns rather than a TUI library: the
output must read the same in a terminal, a log file and a CI transcript.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from zako_sdk.errors import ZakoError
from zako_sdk.stats import (
    Histogram,
    PoolStats,
    QueueStats,
    ResourceStats,
    Stats,
    SystemStats,
    TaskCounters,
    TenantStats,
    VersionInfo,
)

__all__ = ["format_bytes", "format_duration", "render_cluster", "render_stats"]

_INDENT = "  "


def format_bytes(value: float) -> str:
    """Binary units with one decimal: 1536 -> "1.5 KiB"; bytes stay whole numbers."""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    """Uptime the way people say it: "45s", "3m 12s", "2h 05m", "4d 03h"."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _number(value: float) -> str:
    # Capacities are doubles on the wire but usually whole (millicores, worker slots).
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[object]], *, left: int = 1) -> list[str]:
    """Aligned columns under `header`: the first `left` columns flush left (names), the
    rest flush right (numbers), so figures line up by their units digit."""
    cells = [list(header)] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = [
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append((_INDENT + "  ".join(parts)).rstrip())
    return lines


def _pairs(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counts.items())) or "-"


def _versions(versions: VersionInfo) -> str:
    parts = [
        ("server", versions.server),
        ("V8", versions.v8),
        ("mini-racer", versions.mini_racer),
        ("Python", versions.python),
        ("protocol", versions.protocol),
    ]
    return " · ".join(f"{name} {value}" for name, value in parts if value) or "-"


def _workers(pool: PoolStats) -> list[str]:
    lines = [
        f"WORKERS  live {pool.live} (min {pool.min_workers}, max {pool.max_workers})  "
        f"busy {pool.busy}  idle {pool.idle}  started {pool.started_total}  "
        f"reclaimed {pool.reclaimed_total}  crashed {pool.crashed_total}"
    ]
    if pool.workers:
        lines += _table(
            ("ID", "PID", "STATE", "TASKS", "RSS", "HEAP USED", "HEAP LIMIT"),
            (
                (
                    w.worker_id,
                    w.pid,
                    w.state,
                    w.tasks_run,
                    format_bytes(w.rss_bytes),
                    format_bytes(w.last_heap.used_bytes) if w.last_heap else "-",
                    format_bytes(w.last_heap.limit_bytes) if w.last_heap else "-",
                )
                for w in pool.workers
            ),
            left=3,
        )
    return lines


def _queue(queue: QueueStats) -> list[str]:
    lines = [
        f"QUEUE  waiting {queue.depth} of {queue.capacity}  running {queue.running}  "
        f"bytes {format_bytes(queue.queued_bytes)} of {format_bytes(queue.capacity_bytes)}"
    ]
    if queue.depth_by_priority:
        lines += _table(("PRIORITY", "WAITING"), sorted(queue.depth_by_priority.items()), left=0)
    return lines


def _tasks(tasks: TaskCounters) -> list[str]:
    return [
        f"TASKS  accepted {tasks.accepted}  completed {tasks.completed}  "
        f"failed {tasks.failed}  cancelled {tasks.cancelled}  rejected {tasks.rejected}",
        f"{_INDENT}failed by reason:  {_pairs(dict(tasks.failed_by_reason))}",
        f"{_INDENT}rejected by code:  {_pairs(dict(tasks.rejected_by_reason))}",
    ]


def _latency(stats: Stats) -> list[str]:
    def row(name: str, h: Histogram) -> tuple[object, ...]:
        return (
            name,
            h.count,
            _ms(h.p50_seconds),
            _ms(h.p90_seconds),
            _ms(h.p99_seconds),
            _ms(h.mean_seconds),
        )

    return [
        "LATENCY (ms)",
        *_table(
            ("", "COUNT", "P50", "P90", "P99", "MEAN"),
            (row("queue wait", stats.queue_wait), row("run time", stats.run_time)),
        ),
    ]


def _resource_value(name: str, value: float) -> str:
    return format_bytes(value) if name == "memory" else _number(value)


def _resources(resources: Sequence[ResourceStats]) -> list[str]:
    if not resources:
        return ["RESOURCES  -"]
    return [
        "RESOURCES  (cpu in millicores)",
        *_table(
            ("NAME", "CAPACITY", "IN USE", "QUEUED"),
            (
                (
                    r.name,
                    _resource_value(r.name, r.capacity),
                    _resource_value(r.name, r.in_use),
                    _resource_value(r.name, r.queued_demand),
                )
                for r in resources
            ),
        ),
    ]


def _tenants(tenants: Sequence[TenantStats]) -> list[str]:
    if not tenants:
        return ["TENANTS  -"]
    return [
        "TENANTS",
        *_table(
            ("TENANT", "RUNNING", "QUEUED", "ACCEPTED", "REJECTED"),
            ((t.tenant, t.running, t.queued, t.accepted, t.rejected) for t in tenants),
        ),
    ]


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.1f}%"


def _caches(stats: Stats) -> list[str]:
    """The three caches of issue #15, one line each: what they hold, and how often the
    thing asked for was there (the rates are what to watch; the counts say over what)."""
    cas, action, code = stats.cas, stats.action_cache, stats.code_cache
    lines = [
        "CACHES",
        f"{_INDENT}CAS  blobs {cas.blobs}  {format_bytes(cas.bytes)} of "
        f"{format_bytes(cas.capacity_bytes)}  hit rate {_percent(cas.hit_rate)} "
        f"(hits {cas.hits}, misses {cas.misses})  uploads {cas.uploads} "
        f"({format_bytes(cas.uploaded_bytes)})  evictions {cas.evictions}  "
        f"missing rejections {cas.missing_rejections}",
    ]
    if action.enabled or action.hits or action.misses or action.entries:
        lines.append(
            f"{_INDENT}ACTION CACHE  entries {action.entries}  {format_bytes(action.bytes)} of "
            f"{format_bytes(action.capacity_bytes)}  hit rate {_percent(action.hit_rate)} "
            f"(hits {action.hits}, joins {action.joins}, misses {action.misses})  "
            f"stores {action.stores}  evictions {action.evictions}"
        )
    else:
        lines.append(f"{_INDENT}ACTION CACHE  off")
    lines.append(
        f"{_INDENT}CODE CACHE  sources: hit rate {_percent(code.source_hit_rate)} "
        f"(hits {code.source_hits}, misses {code.source_misses}, "
        f"{format_bytes(code.source_bytes_sent)} sent)  compiled: hit rate "
        f"{_percent(code.compiled_hit_rate)} (hits {code.compiled_hits}, "
        f"misses {code.compiled_misses})"
    )
    return lines


def _system(system: SystemStats) -> list[str]:
    return [
        f"SYSTEM  cpus {system.effective_cpus:g}  cpu {system.cpu_percent:.1f}%  "
        f"load {system.load_average_1m:.2f}  "
        f"memory {format_bytes(system.memory_available_bytes)} free of "
        f"{format_bytes(system.effective_memory_bytes)}  "
        f"server RSS {format_bytes(system.server_rss_bytes)}"
    ]


def render_stats(stats: Stats, *, title: str = "", system: bool = True) -> str:
    """The whole snapshot as text, one section per part of the message, blank-line separated.

    `system=False` leaves out the machine, for a cluster total: machines do not add up
    (sum_stats leaves that part empty), and zeros there would read as a dead host.

        print(render_stats(client.stats(), title="127.0.0.1:50051"))
    """
    head = " ".join(
        part
        for part in (
            "zako",
            title,
            f"up {format_duration(stats.uptime)}",
            f"at {stats.time.strftime('%Y-%m-%d %H:%M:%S')} UTC" if stats.time else "",
        )
        if part
    )
    sections = [
        [head, f"{_INDENT}{_versions(stats.versions)}"],
        _workers(stats.pool),
        _queue(stats.queue),
        _tasks(stats.tasks),
        _caches(stats),
        _latency(stats),
        _resources(stats.resources),
        _tenants(stats.tenants),
    ]
    if system:
        sections.append(_system(stats.system))
    return "\n\n".join("\n".join(section) for section in sections) + "\n"


def render_cluster(
    total: Stats,
    replicas: Mapping[str, Stats],
    errors: Mapping[str, ZakoError],
) -> str:
    """`zako stats --all`: the summed table, then a line per replica and per silent one.

    The total comes first because it is what an operator asks about; the replica lines
    are there to spot the one that is busier, older or down.
    """
    rows = [
        (
            name,
            s.versions.server or "-",
            format_duration(s.uptime),
            s.pool.live,
            s.pool.busy,
            s.queue.depth,
            s.tasks.completed,
            s.tasks.failed,
            s.tasks.rejected,
            s.action_cache.hits + s.action_cache.joins,
            f"{s.system.cpu_percent:.1f}",
        )
        for name, s in replicas.items()
    ]
    lines = [f"REPLICAS  {len(replicas)} answered, {len(errors)} did not"]
    if rows:
        lines += _table(
            (
                "TARGET",
                "SERVER",
                "UP",
                "LIVE",
                "BUSY",
                "WAITING",
                "COMPLETED",
                "FAILED",
                "REJECTED",
                "CACHED",
                "CPU%",
            ),
            rows,
            left=3,
        )
    lines += [f"{_INDENT}{name}: did not answer: {error}" for name, error in errors.items()]
    title = f"total of {len(replicas)} replica{'s' if len(replicas) != 1 else ''}"
    return render_stats(total, title=title, system=False) + "\n" + "\n".join(lines) + "\n"
