"""How a task ended: the events and messages that end it, mapped to a Result or an error.

                                   SubmitResponse events
                                                         │
                                        TaskEvents.apply ▼  (one per task)
                              logs, worker id … then a terminal event
                                                         │
                                 outcome_of_terminal ────▼
                               Result  |  TaskFailed / TaskCancelled / TaskRejected

Its own concern because it is the answer side of a task, as `_base.py` is the request
side: one mapping for Submit events and unary RunResponses alike, so a task fails the
same way whichever RPC carried it, and the tests check every mapping without a server.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from zako_sdk.errors import (
    TaskCancelled,
    TaskError,
    TaskFailed,
    TaskTimeout,
    ZakoError,
    rejection_error,
    status_code,
)
from zako_sdk.models import HeapUsage, JsError, LogLine, Result, Timings
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.trees import Digest

Outcome = Result | ZakoError
"""How a task ended: its Result, or the error that `await handle` will raise."""


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
            worker_id=result.worker_id or worker_id,
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
            if kind == "completed" and event.completed.result.worker_id:
                self.worker_id = event.completed.result.worker_id  # no started event needed
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
