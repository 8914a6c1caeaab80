"""One run frame a worker holds (`Slot`), and the done event that settles it.

A slot outlives the pool's dispatch of its task: the worker's events reach it by task
id, the watchdog arms on it, the pool withdraws or cancels it, and either the worker's
done event or its loss settles it (`settle`). Its own concern because the worker's
handle, the pool and the watchdog all hold slots; what a slot is, and the done event the
parent makes up when a worker cannot send one (`lost_result`), belong to none of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from zako_server.protocol import (
    DoneEvent,
    FailureReason,
    JsError,
    LogEvent,
    LogsEvent,
    RunFrame,
    StartedEvent,
)

EventSink = Callable[[StartedEvent | LogsEvent | LogEvent], None]

_ERROR_NAMES = {
    FailureReason.WORKER_LOST: "WorkerLost",
    FailureReason.OUT_OF_MEMORY: "OutOfMemoryError",
    FailureReason.TIMEOUT: "TimeoutError",
}


def lost_result(
    task_id: str, why: str, reason: FailureReason = FailureReason.WORKER_LOST
) -> DoneEvent:
    """The done event the parent makes up when the worker cannot send one."""
    error = JsError(_ERROR_NAMES.get(reason, "WorkerLost"), why, "")
    return DoneEvent(task_id, 0.0, 0.0, None, 0, False, reason=reason, error=error)


@dataclass(eq=False, slots=True)
class Slot:
    """One run frame a worker holds: the task it runs, or one queued behind it.

    `result` is the caller's future; `done` is settled only by the done event or the
    worker's loss, so the cancel path can still wait on it after the caller was
    cancelled (a shield instead cost a loop pass per task). `wired` is the frame as it
    went down the pipe: the code-mirror units it names (`units_of`) must not be evicted
    for a later frame while this one is held."""

    frame: RunFrame
    sink: EventSink
    done: asyncio.Future[DoneEvent]
    result: asyncio.Future[DoneEvent]
    # Called once when the worker says it began this task (the pool starts its memory
    # watch and backstop then: a queued task is not running yet).
    on_begin: Callable[[], None] | None = None
    wired: RunFrame | None = None
    began: bool = False
    began_at: float = 0.0
    # Why the parent took it back while it was still queued ("deadline": its queue
    # deadline passed; "steal": another worker went idle), or None.
    withdrawn: str | None = None
    # Set when the task was cancelled: taken back or not, it is not sent again.
    cancelled: bool = False


def settle(slot: Slot, event: DoneEvent) -> None:
    """Resolve both of the slot's futures with `event`, unless already resolved."""
    for future in (slot.done, slot.result):
        if not future.done():
            future.set_result(event)
