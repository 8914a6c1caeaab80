"""How a task ends: its one terminal event, built and counted.

    the worker's done event ─▶ finish_from_worker ─▶ completed | failed | cancelled
    a refusal, a deadline ────▶ finish_failed
    a cancel, worker loss ────▶ finish_cancelled
    a bug in the server ──────▶ finish_internal (logged; the client sees INTERNAL)
    the action cache ─────────▶ finish_cached (the stored lines, then the terminal)

Its own concern, apart from the engine (engine.py), which decides *when* a task ends:
this module decides *what* its end says, in the contract's words, and counts it in
`Counters` once. `TaskRecord.finish` (records.py) is the latch that makes it once.
"""

from __future__ import annotations

import logging

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_server.protocol import DoneEvent, FailureReason
from zako_server.server.action_cache import Outcome
from zako_server.server.events import (
    ERROR_TEXT_BYTES,
    EVENT_OVERHEAD_BYTES,
    FAILURE_REASONS,
    heap_usage,
    truncate,
)
from zako_server.server.records import Counters, TaskRecord
from zako_server.server.stats import Histogram

# The engine's logger: a task's end is logged as the engine's, wherever it is built.
log = logging.getLogger("zako.engine")


def finish_from_worker(
    record: TaskRecord,
    done: DoneEvent,
    counters: Counters,
    run_time: Histogram,
    max_event_bytes: int,
) -> None:
    """The end a worker reported; `max_event_bytes`: the message limit, which no event
    the engine builds may pass."""
    record.logs_dropped = done.logs_dropped
    record.uncacheable = done.uncacheable
    timings = record.timings(done.run_s, done.cpu_s, done.warm)
    run_time.observe(timings.run.seconds + timings.run.nanos / 1e9)
    usage = heap_usage(done.heap)
    reason = done.reason
    if reason is None and len(done.value or "") > max_event_bytes - EVENT_OVERHEAD_BYTES:
        # Only a max_result_bytes above the message limit lets a worker send this:
        # a completed event that cannot be sent would end the stream.
        finish_failed(
            record,
            counters,
            pb.FAILURE_REASON_RESULT_TOO_LARGE,
            pb.JsError(
                name="RangeError",
                message=f"the result ({len(done.value or '')} characters) does not fit "
                f"a message of {max_event_bytes} bytes",
            ),
            timings,
            usage,
        )
        return
    if reason is None:
        result = pb.Result(
            value_json=done.value or "", timings=timings, heap=usage, worker_id=record.worker_id
        )
        finish(record, counters, record.event(completed=pb.Completed(result=result)))
        return
    if reason is FailureReason.CANCELLED or record.cancel_reason:
        finish_cancelled(record, counters, timings)
        return
    error = done.error
    js_error = (
        pb.JsError()
        if error is None
        else pb.JsError(
            name=truncate(error.name, ERROR_TEXT_BYTES // 16),
            message=truncate(error.message),
            stack=truncate(error.stack),
            module=truncate(error.module or "", ERROR_TEXT_BYTES // 16),
            line=error.line or 0,
            column=error.column or 0,
        )
    )
    finish_failed(record, counters, FAILURE_REASONS[reason], js_error, timings, usage)


def finish_failed(
    record: TaskRecord,
    counters: Counters,
    reason: pb.FailureReason,
    error: pb.JsError,
    timings: pb.Timings | None = None,
    heap: pb.HeapUsage | None = None,
) -> None:
    failed = pb.Failed(reason=reason, error=error, timings=timings or record.timings())
    if heap is not None:
        failed.heap.CopyFrom(heap)
    finish(record, counters, record.event(failed=failed))


def finish(record: TaskRecord, counters: Counters, terminal: pb.SubmitResponse) -> None:
    """A completed or failed task's end, counted once."""
    if not record.finish(terminal):
        return
    if terminal.WhichOneof("event") == "completed":
        counters.completed += 1
    else:
        name = pb.FailureReason.Name(terminal.failed.reason).removeprefix("FAILURE_REASON_")
        counters.failed[name] += 1


def finish_internal(record: TaskRecord, counters: Counters, exc: Exception) -> None:
    log.exception(
        "internal error running task %s",
        record.task_id,
        extra={"task_id": record.task_id, "tenant": record.tenant},
    )
    finish_failed(
        record,
        counters,
        pb.FAILURE_REASON_INTERNAL,
        pb.JsError(name="InternalError", message=f"internal server error: {type(exc).__name__}"),
    )


def finish_cancelled(
    record: TaskRecord, counters: Counters, timings: pb.Timings | None = None
) -> None:
    cancelled = pb.Cancelled(
        reason=record.cancel_reason or "cancelled",
        was_running=bool(record.started_mono),
        timings=timings or record.timings(),
    )
    if record.finish(record.event(cancelled=cancelled)):
        counters.cancelled += 1


def finish_cached(record: TaskRecord, counters: Counters, outcome: Outcome) -> None:
    """Replay a stored outcome: its lines as the original's client got them, then
    its terminal event marked cached, timed as this task (no run, no CPU)."""
    if record.terminal is not None:
        return
    record.logs_dropped = outcome.logs_dropped
    record.log_lines = outcome.line_count
    record.emit_serialized_lines(outcome.log_batches)
    finish(record, counters, record.event(**outcome.terminal(record.timings())))
