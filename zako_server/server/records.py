"""One accepted task as the engine holds it, with the one-shot latch for its end.

    Engine.submit ─▶ TaskRecord(job, owner, emit, gate)
                       │ event(): Accepted, Started, Log … all through `emit`
                       │ worker_lines(): a worker's lines, bounded ─▶ emit_lines(): log events
                       └ finish(terminal) ─▶ emit once ─▶ finished.set()   (a 2nd call: False)

`TaskRecord.finish` is the only way to emit a terminal event and it works once; the
engine (engine.py) decides *when* a task ends, this module only guarantees it ends
once. `Emit` and `Gate` are what the caller (a Submit stream, a unary Run) hands in.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_server.protocol import LOG_BATCH_LINES
from zako_server.server.action_cache import Flight
from zako_server.server.events import LEVELS, duration, timestamp
from zako_server.server.quotas import Ticket
from zako_server.server.validation import Job

# The engine's logger: a task's end is logged as the engine's, wherever the latch lives.
log = logging.getLogger("zako.engine")

Emit = Callable[[pb.SubmitResponse], None]


class Gate(Protocol):
    """Backpressure from where a task's events go (a Submit stream's outbox): while it
    is closed, the task does not start; it waits in line without holding a lease."""

    @property
    def is_open(self) -> bool: ...

    async def wait_open(self) -> None: ...


@dataclass(eq=False)
class TaskRecord:
    """One accepted task: where it is, who owns it, and the one-shot terminal latch."""

    job: Job
    owner: object
    emit: Emit
    tenant: str = "anonymous"
    accepted_wall: float = field(default_factory=time.time)
    accepted_mono: float = field(default_factory=time.monotonic)
    state: str = "queued"  # queued -> running -> done
    ticket: Ticket | None = None
    runner: asyncio.Task[None] | None = None
    started_wall: float = 0.0
    started_mono: float = 0.0
    worker_id: str = ""  # the worker that started it (Result.worker_id)
    cancel_reason: str = ""
    log_lines: int = 0  # lines passed on: the server's own check of the worker's bound
    logs_dropped: int = 0  # lines the worker dropped past the task's log bounds
    gate: Gate | None = None
    # Only the terminal event and logs go to `emit` (Task.terminal_only, a unary Run):
    # no accepted or started event is built at all.
    terminal_only: bool = False
    # The action cache (action_cache.py): the task's key when its outcome may be stored,
    # the lines its client received (kept to store with the outcome), whether the
    # worker said it observed something outside the key, and the flight it leads.
    cache_key: str | None = None
    lines: list[pb.LogLine] | None = None
    uncacheable: bool = False
    flight: Flight | None = None
    terminal: pb.SubmitResponse | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def task_id(self) -> str:
        return self.job.task_id

    def event(self, **kind: Any) -> pb.SubmitResponse:
        return pb.SubmitResponse(task_id=self.task_id, time=timestamp(time.time()), **kind)

    def timings(
        self, run_s: float | None = None, cpu_s: float = 0.0, warm: bool = False
    ) -> pb.Timings:
        finished = timestamp(time.time())
        if self.started_mono:
            if run_s is None:
                run_s = time.monotonic() - self.started_mono
            return pb.Timings(
                accepted_at=timestamp(self.accepted_wall),
                started_at=timestamp(self.started_wall),
                finished_at=finished,
                queued=duration(self.started_mono - self.accepted_mono),
                run=duration(run_s),
                cpu=duration(cpu_s),
                warm_isolate=warm,
            )
        return pb.Timings(
            accepted_at=timestamp(self.accepted_wall),
            finished_at=finished,
            queued=duration(time.monotonic() - self.accepted_mono),
            cpu=duration(cpu_s),
            warm_isolate=warm,
        )

    def worker_lines(self, lines: list[Any]) -> None:
        """Lines a worker reported, as `log` events. The worker bounds a task's lines;
        the server checks the bound again (one line over it: the worker's own "[zako]
        ... dropped" marker), so a faulty worker cannot make a stream's memory grow."""
        room = self.job.frame.max_log_lines + 1 - self.log_lines
        if room <= 0:
            return
        built: list[pb.LogLine] = []
        for entry in lines[:room]:
            try:
                level, message, ts = entry
                built.append(pb.LogLine(level=LEVELS[level], message=message, time=timestamp(ts)))
            except (TypeError, ValueError, KeyError):
                log.error("task %s: a worker sent a malformed log line", self.task_id)
        self.log_lines += len(built)
        if self.lines is not None:  # kept for the action cache, as the client got them
            self.lines.extend(built)
        self.emit_lines(built)

    def emit_lines(self, lines: Sequence[pb.LogLine]) -> None:
        """One `log` event per LOG_BATCH_LINES lines: the first line in `log`, the rest
        in `log.more` (of the event's copy: the lines may be kept by the action cache)."""
        for start in range(0, len(lines), LOG_BATCH_LINES):
            first, *more = lines[start : start + LOG_BATCH_LINES]
            event = self.event(log=first)
            if more:
                event.log.more.extend(more)
            self.emit(event)

    def emit_serialized_lines(self, batches: Sequence[bytes]) -> None:
        """`log` events from serialized LogLines (each with its `more`): a replay of
        lines the action cache kept."""
        for batch in batches:
            event = self.event()
            event.log.MergeFromString(batch)
            self.emit(event)

    def finish(self, event: pb.SubmitResponse) -> bool:
        """Emit the terminal event; False (and nothing emitted) if one was already sent."""
        if self.terminal is not None:
            return False
        self.terminal = event
        self.state = "done"
        self.emit(event)
        self.finished.set()
        outcome = event.WhichOneof("event")
        level = logging.INFO if outcome == "failed" else logging.DEBUG
        if log.isEnabledFor(level):  # the usual completed task logs nothing: skip the extras
            reason = (
                pb.FailureReason.Name(event.failed.reason)
                if outcome == "failed"
                else event.cancelled.reason
                if outcome == "cancelled"
                else None
            )
            log.log(
                level,
                "task %s %s",
                self.task_id,
                outcome,
                extra={"task_id": self.task_id, "tenant": self.tenant, "reason": reason},
            )
        return True


@dataclass
class Counters:
    """Task outcomes since start; read by Stats."""

    accepted: int = 0
    completed: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    cancelled: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
