"""Value objects the SDK hands out and takes in: results, logs, errors, task specs, the
answer to a cancel. (What a server reports about itself is in `zako_sdk.stats` and
`zako_sdk.capabilities`.)

They are frozen dataclasses built from the wire messages once, at the edge, so callers
never touch generated protobuf classes (whose API is awkward: unset vs zero, Timestamp
objects) and can compare, print and construct these in their own tests.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, TypedDict, get_args

from google.protobuf import duration_pb2, timestamp_pb2

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.trees import ModuleTree

if TYPE_CHECKING:
    from zako_sdk.errors import ZakoError
    from zako_sdk.stats import Stats

__all__ = [
    "CONTEXT_KINDS",
    "CONTEXT_NAMES",
    "USE_CLIENT_DEFAULT",
    "CachePolicyName",
    "CancelResult",
    "ClusterStats",
    "ContextName",
    "HeapUsage",
    "JsError",
    "LogLine",
    "Resources",
    "Result",
    "Retry",
    "TaskOptions",
    "TaskSpec",
    "TaskState",
    "Timings",
    "UseClientDefault",
]

ContextName = Literal["package", "build", "rule", "toolchain", "config"]
"""The capability profile a task runs in; see ContextKind in executor.proto."""

CachePolicyName = Literal["use", "refresh", "skip"]
"""How a hermetic task uses the server's action cache; see CachePolicy in executor.proto."""

CONTEXT_NAMES: tuple[ContextName, ...] = get_args(ContextName)
"""Every context name, in ContextKind order."""

CONTEXT_KINDS: Mapping[str, int] = {
    name: pb.ContextKind.Value(f"CONTEXT_KIND_{name.upper()}") for name in CONTEXT_NAMES
}
"""Each context name's ContextKind number (`CONTEXT_KIND_<NAME>` on the wire): the one
table both the SDK and the server read, so a new kind is one word in ContextName."""


class UseClientDefault:
    """Type of USE_CLIENT_DEFAULT: "not given", distinct from None.

    `timeout=None` means "the server's default"; leaving `timeout` out means "this
    client's default", which may itself be None. One value cannot say both (httpx).
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "USE_CLIENT_DEFAULT"


USE_CLIENT_DEFAULT = UseClientDefault()


def _seconds(duration: duration_pb2.Duration) -> float:
    return duration.seconds + duration.nanos / 1e9


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _time(message: Any, name: str) -> dt.datetime | None:
    # Unset timestamps mean "never happened" (e.g. started_at of a task cancelled in the
    # queue); the epoch would be a lie.
    if not message.HasField(name):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, name)
    # Timestamp.ToDatetime(tzinfo=utc)'s own arithmetic (nanos are never negative, so //
    # rounds toward zero as it does) without its generic time-zone step: 1.2 -> 0.7 µs,
    # three times per result.
    return _EPOCH + dt.timedelta(seconds=stamp.seconds, microseconds=stamp.nanos // 1000)


@dataclass(frozen=True)
class LogLine:
    """One line a task printed through `console`; `level` is debug, info, warn or error."""

    level: str
    message: str
    time: dt.datetime | None = None

    @classmethod
    def from_proto(cls, line: pb.LogLine) -> LogLine:
        name = pb.LogLevel.Name(line.level).removeprefix("LOG_LEVEL_").lower()
        return cls("info" if name == "unspecified" else name, line.message, _time(line, "time"))


@dataclass(frozen=True)
class JsError:
    """A JavaScript error as the worker saw it; `line`/`column` are 1-based, 0 if unknown."""

    name: str
    message: str
    stack: str = ""
    module: str = ""
    line: int = 0
    column: int = 0

    @classmethod
    def from_proto(cls, error: pb.JsError) -> JsError:
        return cls(error.name, error.message, error.stack, error.module, error.line, error.column)

    def format(self) -> str:
        """`Name: message` followed by the stack, without repeating the header.

        V8 stacks already start with `Name: message`; printing both would show it twice.
        """
        header = f"{self.name}: {self.message}" if self.name else self.message
        stack = self.stack.strip("\n")
        if not stack:
            return header
        return stack if stack.startswith(header) else f"{header}\n{stack}"

    def __str__(self) -> str:
        return self.format()


@dataclass(frozen=True)
class Timings:
    """Where a task's time went; timestamps are the server's clock, durations in seconds.

    `warm_isolate` says the task ran in a warm isolate the server kept from earlier tasks
    of the same tenant (False: a fresh one, e.g. asked for with `fresh_isolate=True`).
    """

    accepted_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    queued: float = 0.0
    run: float = 0.0
    cpu: float = 0.0
    warm_isolate: bool = False

    @classmethod
    def from_proto(cls, timings: pb.Timings) -> Timings:
        return cls(
            _time(timings, "accepted_at"),
            _time(timings, "started_at"),
            _time(timings, "finished_at"),
            _seconds(timings.queued),
            _seconds(timings.run),
            _seconds(timings.cpu),
            timings.warm_isolate,
        )


@dataclass(frozen=True)
class HeapUsage:
    """A V8 heap reading in bytes."""

    used_bytes: int = 0
    total_bytes: int = 0
    limit_bytes: int = 0

    @classmethod
    def from_proto(cls, heap: pb.HeapUsage) -> HeapUsage:
        return cls(heap.used_bytes, heap.total_bytes, heap.limit_bytes)


@dataclass(frozen=True)
class Result:
    """What a task returned.

    `value_json` is the exact text the script's value serialized to; `value` decodes it
    on first access (lazily, so benchmarks and pass-through callers do not pay for it).

        result = await client.run("module.exports = (x) => ({doubled: x * 2})", input=21)
        assert result.value == {"doubled": 42}

    `cached` says the server answered from its action cache (an earlier identical
    hermetic task, or one running at the same time): this task did not run itself.
    """

    task_id: str
    value_json: str
    logs: tuple[LogLine, ...] = ()
    timings: Timings = field(default_factory=Timings)
    heap: HeapUsage = field(default_factory=HeapUsage)
    worker_id: str | None = None
    cached: bool = False

    @cached_property
    def value(self) -> Any:
        return json.loads(self.value_json) if self.value_json else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (timestamps as ISO 8601), e.g. for `zako run --full`."""

        def iso(moment: dt.datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        t = self.timings
        return {
            "task_id": self.task_id,
            "value": self.value,
            "logs": [
                {"level": line.level, "message": line.message, "time": iso(line.time)}
                for line in self.logs
            ],
            "timings": {
                "accepted_at": iso(t.accepted_at),
                "started_at": iso(t.started_at),
                "finished_at": iso(t.finished_at),
                "queued_s": t.queued,
                "run_s": t.run,
                "cpu_s": t.cpu,
                "warm_isolate": t.warm_isolate,
            },
            "heap": {
                "used_bytes": self.heap.used_bytes,
                "total_bytes": self.heap.total_bytes,
                "limit_bytes": self.heap.limit_bytes,
            },
            "worker_id": self.worker_id,
            "cached": self.cached,
        }


@dataclass(frozen=True)
class Resources:
    """What a task needs while it runs; zeros mean the server's defaults.

    Resources(cpu_millis=500, memory_bytes=64 << 20, extras={"licenses": 1})
    """

    cpu_millis: int = 0
    memory_bytes: int = 0
    extras: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    """One task for `batch()`: the source and the same options `run()` takes.

        specs = [TaskSpec("module.exports = (n) => n * n", input=n) for n in range(100)]
        results = await client.batch(specs)

    `fresh_isolate=True` runs the task in a V8 isolate no other task used, instead of a
    warm one the server reuses across the tenant's tasks with built-ins frozen: for code
    that must patch built-ins (a polyfill). It costs the server a few milliseconds.

    `epoch` (an aware datetime, or seconds since 1970) is what `Date.now()` reads in a
    hermetic context (default: the server's fixed 2024-01-01T00:00:00Z); `seed` seeds its
    `Math.random` and `crypto` (default: derived from the task's content). Both exist to
    make a task reproducible on purpose; under `system_access` the clock and randomness
    are real and both are ignored.

    `modules` is the rest of the module tree: a {path: text} dict, a directory (a Path of
    a project or a node_modules folder), or a `ModuleTree` built once and reused (no
    hashing per call). It travels by digest: each replica is sent only the blobs it lacks,
    once. `cache` ("use", the server's default; "refresh"; "skip") is how a hermetic task
    uses the server's action cache (`Result.cached`).

    `terminal_only=True` (on a Submit stream) skips the `accepted` and `started` events:
    one message per task instead of three, for callers that want only the outcome and the
    logs (`run()` asks for it by default). A completed Result still names its worker
    (the server puts it in the result); the handle's `worker_id` is then known only once
    the task completed.
    """

    source: str
    input: Any = None
    context: ContextName | str = "build"
    timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT
    # A name -> source map, a directory (a Path) packed as the task's tree, or a tree.
    modules: Mapping[str, str] | os.PathLike[str] | ModuleTree | None = None
    entry_name: str | None = None
    priority: int = 0
    labels: Mapping[str, str] | None = None
    resources: Resources | Mapping[str, Any] | None = None
    system_access: bool = False
    task_id: str | None = None
    fresh_isolate: bool = False
    epoch: dt.datetime | float | None = None
    seed: str | None = None
    cache: CachePolicyName | None = None
    terminal_only: bool = False


class TaskOptions(TypedDict, total=False):
    """The keyword options of `run()`, `run_unary()` and `submit()`: TaskSpec's fields
    after `source`, with TaskSpec's defaults.

    One definition for the six methods of both clients (`**options: Unpack[TaskOptions]`),
    so a new option is added here and in TaskSpec, and a test holds the two in step.
    """

    input: Any
    context: ContextName | str
    timeout: float | UseClientDefault | None
    modules: Mapping[str, str] | os.PathLike[str] | ModuleTree | None
    entry_name: str | None
    priority: int
    labels: Mapping[str, str] | None
    resources: Resources | Mapping[str, Any] | None
    system_access: bool
    task_id: str | None
    fresh_isolate: bool
    epoch: dt.datetime | float | None
    seed: str | None
    cache: CachePolicyName | None
    terminal_only: bool


@dataclass(frozen=True)
class Retry:
    """How the clients resubmit a task that a server turned away without running it.

        AsyncClient(["h1:50051", "h2:50051"], retry=Retry(attempts=5, backoff=0.2))
        AsyncClient(target, retry=None)          # never resubmit (same as attempts=1)

    Only rejections that prove the task never ran are retried: RESOURCE_EXHAUSTED (queue
    or quota full) and UNAVAILABLE (a draining server), and tasks that never left this
    client (a replica that could not be reached). A task that failed, was cancelled, or
    whose stream broke after it was sent may have run, so it is never resent: for build
    steps with side effects, "at most once" is the promise worth keeping.

    `attempts` counts the first one. Before attempt n+1 the task waits
    `backoff * 2**(n-1)` seconds (capped at `max_backoff`, spread by +-`jitter` as a
    fraction so that many clients refused at once do not return in lockstep), and at
    least the server's `retry_after` whenever it goes back to the replica that refused it.
    """

    attempts: int = 3
    backoff: float = 0.1
    max_backoff: float = 5.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"Retry.attempts must be at least 1, got {self.attempts}")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("Retry.backoff and Retry.max_backoff must not be negative")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"Retry.jitter is a fraction in [0, 1], got {self.jitter}")


@dataclass(frozen=True)
class ClusterStats:
    """Stats of every replica a client talks to, and their sum.

        cluster = await client.stats_all()
        print(cluster.total.tasks.completed)
        for replica, stats in cluster.replicas.items():
            print(replica, stats.pool.busy)

    `total` is a Stats of the same shape as one replica's (so the same field
    paths, `jq` filters and dashboards work on it): counters, gauges, capacities and
    histogram buckets are summed; per-resource and per-tenant rows are summed by name;
    percentiles are re-estimated from the summed buckets; `uptime` is the longest.
    `errors` names the replicas that did not answer (their numbers are not in `total`).
    """

    replicas: Mapping[str, Stats]
    total: Stats
    errors: Mapping[str, ZakoError] = field(default_factory=dict)


class TaskState(enum.IntEnum):
    """Where a task was when a cancel reached it; the numbers are the wire's TaskState."""

    UNSPECIFIED = 0
    QUEUED = 1
    RUNNING = 2


@dataclass(frozen=True)
class CancelResult:
    """What `cancel()` found: QUEUED means the task never ran, RUNNING that it was stopped.

    if client.cancel(task_id).previous_state is TaskState.QUEUED: ...
    """

    previous_state: TaskState

    @classmethod
    def from_proto(cls, response: pb.CancelResponse) -> CancelResult:
        try:
            return cls(TaskState(response.previous_state))
        except ValueError:  # a state newer than this SDK
            return cls(TaskState.UNSPECIFIED)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view, e.g. for `zako cancel`: the state by its short name."""
        return {"previous_state": self.previous_state.name.lower()}
