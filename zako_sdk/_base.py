"""The part of the SDK that does no I/O, shared by AsyncClient and Client.

    TaskSpec ──build_task──▶ pb.Task ──▶ (wire) ──▶ SubmitResponse events
                                                         │
                                        TaskEvents.apply ▼  (one per task)
                              logs, worker id … then a terminal event
                                                         │
                                 outcome_of_terminal ────▼
                               Result  |  TaskFailed / TaskCancelled / TaskRejected

Also here, because they are decisions rather than I/O: which outcomes may be retried and
when (`plan_retry`), and which replica a task goes to next (`pick_lane`). Targets are
read in `_targets.py`.

Keeping this apart from the clients is what lets the sync face be a thin forwarder and
lets the tests check every mapping without a server (httpx `BaseClient`).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import duration_pb2, timestamp_pb2

from zako_sdk.errors import (
    MESSAGE_LIMIT_QUOTA,
    MessageTooLarge,
    TaskCancelled,
    TaskError,
    TaskFailed,
    TaskRejected,
    TaskTimeout,
    Unavailable,
    ZakoError,
    rejection_error,
    status_code,
)
from zako_sdk.models import (
    CONTEXT_KINDS,
    CONTEXT_NAMES,
    HeapUsage,
    JsError,
    LogLine,
    Resources,
    Result,
    Retry,
    TaskSpec,
    Timings,
    UseClientDefault,
)
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.trees import Digest, ModuleTree

Outcome = Result | ZakoError
"""How a task ended: its Result, or the error that `await handle` will raise."""

Metadata = Mapping[str, str] | Sequence[tuple[str, str]]

DEFAULT_TARGET = "127.0.0.1:50051"
TENANT_HEADER = "x-zako-tenant"

DEFAULT_CHANNEL_OPTIONS: dict[str, Any] = {
    # gRPC's default 4 MiB receive cap would turn a large (server-permitted) result into
    # an opaque RESOURCE_EXHAUSTED on our side; the server already bounds result size.
    "grpc.max_receive_message_length": -1,
    # Keepalive as the server expects it (zako_server/server/app.py): it permits pings every
    # >= 10 s even without calls, so pinging every 30 s never earns a GOAWAY
    # "too_many_pings", and a replica that vanished (pod killed, node gone) is noticed
    # within 40 s instead of at the next TCP timeout, minutes later.
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.http2.max_pings_without_data": 0,  # a long task sends no data for minutes
}

# For a dns:/// name: one subchannel per resolved address and calls spread over them
# (the default pick_first would send everything to the first address).
ROUND_ROBIN_SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})


def new_task_id() -> str:
    """A fresh id: 128 random bits as 32 hex digits, so that ids from many clients (and
    forked processes) never collide on a server. os.urandom rather than uuid4, which
    builds a UUID object on the way: 0.5 µs instead of 2 µs, on every task."""
    return os.urandom(16).hex()


def context_kind(name: str) -> int:
    """The ContextKind number for "package" | "build" | "rule" | "toolchain" | "config"."""
    kind = CONTEXT_KINDS.get(name) if isinstance(name, str) else None  # the usual spelling
    if kind is not None:
        return kind
    try:
        return CONTEXT_KINDS[name.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown context {name!r}; expected one of {CONTEXT_NAMES}") from None


def duration(seconds: float) -> duration_pb2.Duration:
    """Seconds as a Duration, to the nanosecond (Duration has no float field)."""
    result = duration_pb2.Duration()
    result.FromNanoseconds(round(seconds * 1_000_000_000))
    return result


@functools.lru_cache(maxsize=64)
def _timeout(seconds: float) -> duration_pb2.Duration:
    # A client sends the same few timeouts (usually its default) on every task. Shared:
    # never mutated, only copied into each Task by its constructor.
    return duration(seconds)


# allow_nan=False: NaN/Infinity are not JSON and JSON.parse would reject them. One encoder
# for all calls: json.dumps with options builds a new one each time (0.85 µs saved).
_encode_input = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode


def _resources(value: Resources | Mapping[str, Any]) -> pb.ResourceRequests:
    if isinstance(value, Mapping):
        unknown = set(value) - {"cpu_millis", "memory_bytes", "extras"}
        if unknown:
            raise ValueError(
                f"unknown resource keys {sorted(unknown)}; "
                "expected cpu_millis, memory_bytes, extras"
            )
        value = Resources(**value)
    return pb.ResourceRequests(
        cpu_millis=int(value.cpu_millis),
        memory_bytes=int(value.memory_bytes),
        extras={k: float(v) for k, v in value.extras.items()},
    )


def _timestamp(epoch: dt.datetime | float) -> timestamp_pb2.Timestamp:
    """A Task.epoch from an aware datetime or seconds since 1970 (a naive datetime is
    refused: which zone it meant cannot be known, and hermetic tasks run in UTC)."""
    if isinstance(epoch, dt.datetime):
        if epoch.tzinfo is None:
            raise ValueError("epoch must be timezone-aware (e.g. datetime(..., tzinfo=UTC))")
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(epoch)
        return stamp
    if isinstance(epoch, bool) or not isinstance(epoch, int | float):
        raise TypeError(f"epoch must be a datetime or seconds since 1970, not {epoch!r}")
    millis = round(epoch * 1000)
    return timestamp_pb2.Timestamp(seconds=millis // 1000, nanos=(millis % 1000) * 1_000_000)


CACHE_POLICIES: Mapping[str, int] = {
    name: pb.CachePolicy.Value(f"CACHE_POLICY_{name.upper()}")
    for name in ("use", "refresh", "skip")
}
"""`cache=` names and their CachePolicy numbers."""


@dataclass(frozen=True)
class Prepared:
    """A task ready to place: the wire Task and the tree its `tree` digest names (whose
    blobs a replica may have to be sent first), or None when it names none."""

    task: pb.Task
    tree: ModuleTree | None = None


def _cache_policy(name: str) -> int:
    try:
        return CACHE_POLICIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown cache policy {name!r}; expected use, refresh or skip") from None


def prepare(spec: TaskSpec, *, default_timeout: float | None) -> Prepared:
    """The wire Task for `spec` and its module tree (hashed here, unless prebuilt).

    The tree goes by digest (`Task.tree`), less the file at the entry's name, which
    travels inline as `source`.

        prepared = prepare(TaskSpec(src, modules={"lib/a.js": "…"}), default_timeout=None)
    """
    task = build_task(spec, default_timeout=default_timeout, modules=False)
    tree = None
    if spec.modules is not None:
        tree = ModuleTree.of(spec.modules).without(spec.entry_name or "main.js")
        if len(tree):
            task.tree.CopyFrom(tree.digest.to_proto())
        else:
            tree = None
    return Prepared(task, tree)


def build_task(spec: TaskSpec, *, default_timeout: float | None, modules: bool = True) -> pb.Task:
    """The wire Task for `spec`; `default_timeout` stands in where the spec gives none.

    Raises ValueError/TypeError for what can be judged here (an unknown context, an input
    that is not JSON-serializable) so the mistake points at the caller's line, not at a
    rejection event later.

        task = build_task(TaskSpec("module.exports = 1"), default_timeout=None)
    """
    timeout = default_timeout if isinstance(spec.timeout, UseClientDefault) else spec.timeout
    # Only the fields that differ from the proto's defaults: each keyword costs the
    # constructor a conversion even when it sets a zero (1.5 µs -> 0.5 µs for a plain task).
    fields: dict[str, Any] = {
        "id": spec.task_id or new_task_id(),
        "source": spec.source,
        "context": context_kind(spec.context),
    }
    if spec.input is not None:
        fields["input_json"] = _encode_input(spec.input)
    if spec.entry_name:
        fields["entry_name"] = spec.entry_name
    if spec.priority:
        fields["priority"] = spec.priority
    if spec.labels:
        fields["labels"] = dict(spec.labels)
    if spec.system_access:
        fields["system_access"] = True
    if spec.fresh_isolate:
        fields["fresh_isolate"] = True
    if spec.epoch is not None:
        fields["epoch"] = _timestamp(spec.epoch)
    if spec.seed:
        fields["seed"] = spec.seed
    if spec.terminal_only:
        fields["terminal_only"] = True
    if spec.cache is not None:
        fields["cache"] = _cache_policy(spec.cache)
    if modules and spec.modules is not None:
        # Inline, as a server without a content store takes them (`prepare` sends the
        # tree by digest instead); the entry among the files travels as `source`.
        tree = ModuleTree.of(spec.modules).without(spec.entry_name or "main.js")
        fields["modules"] = inline_modules(tree)
    if spec.resources is not None:
        fields["resources"] = _resources(spec.resources)
    if timeout is not None:
        fields["timeout"] = _timeout(timeout)
    return pb.Task(**fields)


def inline_modules(tree: ModuleTree) -> list[pb.Module]:
    """The tree's files as Task.modules, for a server that has no content store."""
    return [pb.Module(name=name, source=source) for name, source in tree.files.items()]


def channel_options(
    extra: Iterable[tuple[str, Any]] | None, *, balanced: bool = False
) -> list[tuple[str, Any]]:
    """Our defaults overlaid with the caller's; the caller's value wins for a repeated key.

    `balanced` (a dns:/// target) adds the round_robin service config.
    """
    merged = dict(DEFAULT_CHANNEL_OPTIONS)
    if balanced:
        merged["grpc.service_config"] = ROUND_ROBIN_SERVICE_CONFIG
    merged.update(extra or ())
    return list(merged.items())


def metadata_tuple(
    metadata: Metadata | None, tenant: str | None = None
) -> tuple[tuple[str, str], ...]:
    """Metadata in the one shape grpc accepts everywhere, with the tenant header if given.

    An explicit `tenant` replaces any x-zako-tenant in `metadata`: two would leave the
    server to choose, and it takes the first.
    """
    items = (
        ()
        if metadata is None
        else (metadata.items() if isinstance(metadata, Mapping) else metadata)
    )
    pairs = tuple((str(k).lower(), str(v)) for k, v in items)
    if tenant is None:
        return pairs
    return (*(pair for pair in pairs if pair[0] != TENANT_HEADER), (TENANT_HEADER, tenant))


# -- the message limit ---------------------------------------------------------------------

# Tasks up to this size are sent without first asking the server for its message limit
# (a server set below it still refuses them, as MessageTooLarge): a Capabilities call
# is worth it only for a task that may well be over the limit.
ASK_LIMIT_ABOVE = 1 << 20


@dataclass(frozen=True)
class MessageLimit:
    """The largest request that may be sent, and whose limit it is (for the error)."""

    max_bytes: int
    source: str


def channel_send_limit(options: Iterable[tuple[str, Any]]) -> MessageLimit | None:
    """The channel's own send limit, if the caller set one."""
    for key, value in options:
        if key == "grpc.max_send_message_length" and isinstance(value, int) and value >= 0:
            return MessageLimit(value, "the channel's grpc.max_send_message_length")
    return None


def request_bytes(task: pb.Task) -> int:
    """Bytes of the RunRequest or SubmitRequest that carries `task` (its field 1)."""
    size = task.ByteSize()
    return 1 + (size.bit_length() + 6) // 7 + size if size else 2


def check_request_size(task: pb.Task, limits: Iterable[MessageLimit | None]) -> None:
    """Raise MessageTooLarge, without sending, when `task` is over any known limit.

    A request over the limit can never succeed: sent anyway, gRPC refuses it (on a
    Submit stream, by ending the whole stream) and a retry only repeats that (#12)."""
    size = request_bytes(task)
    for limit in limits:
        if limit is not None and size > limit.max_bytes:
            raise MessageTooLarge(
                f"task {task.id}: its request is {size} bytes, over {limit.source} of "
                f"{limit.max_bytes} bytes; it was not sent (a larger limit, or a smaller "
                "task: sources and input travel in the request)",
                task_id=task.id,
                code=grpc.StatusCode.RESOURCE_EXHAUSTED,
                field="task",
                quota=MESSAGE_LIMIT_QUOTA,
            )


# -- retries -------------------------------------------------------------------------------

_NEVER_RAN_CODES = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE})


def never_ran(outcome: Outcome, *, sent: bool) -> bool:
    """Whether `outcome` proves the task did not run, so sending it again cannot run it twice.

    True for a rejection for capacity (RESOURCE_EXHAUSTED: queue or quota full;
    UNAVAILABLE: the replica is draining) and for a transport failure of a task that
    never left this client (`sent` False). Everything else may have run: a result, a
    failure, a cancel, and a stream that broke after the task was written.
    """
    if isinstance(outcome, MessageTooLarge):  # RESOURCE_EXHAUSTED, yet never succeeds
        return False
    if isinstance(outcome, TaskRejected):
        return outcome.code in _NEVER_RAN_CODES
    return isinstance(outcome, Unavailable) and not sent


def backoff_delay(retry: Retry, attempt: int, rand: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based); `rand` in [0, 1)."""
    base = min(retry.max_backoff, retry.backoff * 2.0 ** (attempt - 1))
    return max(0.0, base * (1 + retry.jitter * (2 * rand - 1)))


@dataclass(frozen=True)
class RetryPlan:
    """What to do after an attempt that never ran.

    `delay`: wait at least this long before the next attempt (the backoff).
    `cooldown`: keep new attempts off the replica that refused for this long (its
    retry_after; a replica we could not reach gets the backoff). So with one replica
    the task waits max(retry_after, backoff), as the server asked; with several it goes
    to another one after the backoff alone, since retry_after speaks for its sender.
    """

    delay: float
    cooldown: float


def plan_retry(
    retry: Retry | None, attempt: int, outcome: Outcome, *, sent: bool, rand: float
) -> RetryPlan | None:
    """The retry after attempt number `attempt` ended in `outcome`, or None to give up.

    plan = plan_retry(Retry(), 1, overloaded, sent=True, rand=random.random())
    """
    if retry is None or attempt >= retry.attempts or not never_ran(outcome, sent=sent):
        return None
    delay = backoff_delay(retry, attempt, rand)
    retry_after = outcome.retry_after if isinstance(outcome, TaskRejected) else None
    return RetryPlan(delay=delay, cooldown=delay if retry_after is None else retry_after)


def pick_lane(
    cool_until: Sequence[float],
    start: int,
    now: float,
    avoid: int | None = None,
    order: Sequence[int] | None = None,
) -> int:
    """The lane (a replica's stream) for the next attempt, round robin from `start`, or
    in `order` when given (a routed task's rendezvous ranking; `start` is then unused).

    The first lane in that order that is not cooling down at `now` and is not `avoid`
    (the one that just refused); else `avoid` if it is not cooling; else whichever lane's
    cooldown ends first (the caller waits for it). Never fails: with every replica
    refusing, the task waits rather than giving up early, and `Retry.attempts` bounds that.
    """
    n = len(cool_until)
    if n == 0:
        raise ValueError("no lanes to pick from")
    if order is None:
        order = [(start + k) % n for k in range(n)]
    for lane in order:
        if lane != avoid and cool_until[lane] <= now:
            return lane
    if avoid is not None and 0 <= avoid < n and cool_until[avoid] <= now:
        return avoid
    return min(order, key=lambda lane: cool_until[lane])


def _failed(task_id: str, failed: pb.Failed) -> TaskFailed:
    reason = pb.FailureReason.Name(failed.reason).removeprefix("FAILURE_REASON_")
    cls = TaskTimeout if failed.reason == pb.FAILURE_REASON_TIMEOUT else TaskFailed
    return cls(
        task_id=task_id,
        reason=reason,
        js_error=JsError.from_proto(failed.error),
        timings=Timings.from_proto(failed.timings),
        cached=failed.cached,
    )


def outcome_of_terminal(
    task_id: str,
    kind: str,
    event: Any,
    *,
    logs: Sequence[LogLine] = (),
    worker_id: str | None = None,
) -> Outcome:
    """Map one terminal message (`kind` is its oneof name) to a Result or an error.

    The same function serves Submit events and RunResponse outcomes, so a task fails
    the same way whichever RPC carried it.
    """
    if kind == "completed":
        result = event.result
        return Result(
            task_id=task_id,
            value_json=result.value_json,
            logs=tuple(logs),
            timings=Timings.from_proto(result.timings),
            heap=HeapUsage.from_proto(result.heap),
            worker_id=worker_id,
            cached=result.cached,
        )
    if kind == "failed":
        return _failed(task_id, event)
    if kind == "cancelled":
        return TaskCancelled(task_id=task_id, reason=event.reason, was_running=event.was_running)
    if kind == "rejected":
        retry_after = (
            event.retry_after.ToNanoseconds() / 1e9 if event.HasField("retry_after") else None
        )
        return rejection_error(
            status_code(event.code),
            event.message,
            task_id=task_id,
            field=event.field,
            retry_after=retry_after,
            quota=event.quota,
            missing_blobs=tuple(Digest.from_proto(d) for d in event.missing_blobs),
        )
    raise ValueError(f"not a terminal event: {kind!r}")


def outcome_of_run(response: pb.RunResponse) -> Outcome:
    """The outcome of a unary Run call."""
    kind = response.WhichOneof("outcome")
    if kind is None:
        # A server that answers OK without an outcome broke the contract; say so plainly
        # rather than inventing a value.
        return TaskError("the server's RunResponse has no outcome", task_id=response.task_id)
    logs = [LogLine.from_proto(line) for line in response.logs]
    return outcome_of_terminal(response.task_id, kind, getattr(response, kind), logs=logs)


class TaskEvents:
    """Accumulates the events of one task on a Submit stream until its terminal one.

    `on_log` is called with each LogLine as it arrives (the CLI streams them to stderr).
    It is called synchronously by whoever applies events, so it must not block.

        events = TaskEvents("t1")
        for event in stream_events:
            outcome = events.apply(event)
            if outcome is not None:
                break
    """

    def __init__(self, task_id: str, on_log: Callable[[LogLine], object] | None = None) -> None:
        self.task_id = task_id
        self.on_log = on_log
        self.logs: list[LogLine] = []
        self.worker_id: str | None = None
        self.queue_position: int | None = None
        self.outcome: Outcome | None = None

    def apply(self, event: pb.SubmitResponse) -> Outcome | None:
        """Take one event; returns the outcome once the terminal event arrives."""
        if self.outcome is not None:
            return None  # the contract says nothing follows a terminal event; ignore it
        kind = event.WhichOneof("event")
        if kind == "accepted":
            self.queue_position = event.accepted.queue_position
        elif kind == "started":
            self.worker_id = event.started.worker_id or None
        elif kind == "log":  # one line, and in `more` the lines printed right after it
            for proto_line in (event.log, *event.log.more):
                line = LogLine.from_proto(proto_line)
                self.logs.append(line)
                if self.on_log is not None:
                    self.on_log(line)
        elif kind is not None:
            self.outcome = outcome_of_terminal(
                self.task_id, kind, getattr(event, kind), logs=self.logs, worker_id=self.worker_id
            )
            return self.outcome
        return None


def unwrap(outcome: Outcome) -> Result:
    """The Result, or raise the error. Re-raising a shared error object is fine: asyncio does
    the same when several waiters await one failed future."""
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome
