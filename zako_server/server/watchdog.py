"""The supervisor's watches over one running task: its worker's memory and a backstop.

    worker says it began the task ──arm()──▶ memory check every RSS_POLL_S
                                             backstop at timeout + cancel grace + margin
    the task's done event (or the worker's loss) ──▶ the caller cancels both

Both are loop timers, not tasks: a task per dispatch plus its cancellation was a sizeable
part of the server's CPU per task. They are armed when the worker begins the task, not
when it is sent: a task queued behind another on its worker (prefetch, pool.py) is not
running yet. Either ends by killing the worker, with a verdict on the task it ran
(WorkerHandle.kill's reason), which the worker's loss then reports.
"""

from __future__ import annotations

import asyncio
import logging

from zako_server.protocol import FailureReason
from zako_server.server.slots import Slot
from zako_server.server.worker_handle import WorkerHandle

log = logging.getLogger("zako.pool")

# Beyond the task's own timeout (which the worker enforces inside V8), how long the
# parent waits before it declares the worker hung and kills it.
BACKSTOP_MARGIN_S = 2.0
# How often a busy worker's resident memory is checked against its bound.
RSS_POLL_S = 0.05


def arm(
    worker: WorkerHandle,
    slot: Slot,
    rss_margin: int,
    cancel_grace: float,
    timers: list[asyncio.TimerHandle],
) -> None:
    """Start both watches over `slot`'s task on `worker`, their timers in the empty list
    `timers` for the caller to cancel (the memory check replaces its own entry, the
    first, each time it re-arms)."""
    loop = asyncio.get_running_loop()
    frame = slot.frame
    # The module texts the worker keeps for later tasks (code_mirror.py) are its own
    # memory, not the task's: they raise the bound rather than eat the margin.
    kept = 0 if worker.sources is None else worker.sources.bytes
    limit = frame.max_heap_bytes + rss_margin + kept
    check = loop.call_later(RSS_POLL_S, _check_memory, worker, slot, limit, rss_margin, timers)
    backstop = frame.timeout_s + cancel_grace + BACKSTOP_MARGIN_S
    timers[:] = [check, loop.call_later(backstop, _kill_overdue, worker, slot)]


def _kill_overdue(worker: WorkerHandle, slot: Slot) -> None:
    """The backstop: the worker enforces the timeout inside V8; if it did not, kill it
    (its done future then resolves with this verdict)."""
    if slot.done.done() or not worker.alive:
        return
    timeout = slot.frame.timeout_s
    log.error(
        "worker %s ignored the %.1fs timeout of task %s; killing it",
        worker.id,
        timeout,
        slot.frame.id,
    )
    worker.kill(
        (
            FailureReason.TIMEOUT,
            f"the task ran past its {timeout:g}s timeout "
            "and its worker did not stop it; the worker was killed",
        )
    )


def _check_memory(
    worker: WorkerHandle,
    slot: Slot,
    limit: int,
    margin: int,
    timers: list[asyncio.TimerHandle],
) -> None:
    """Kill a worker whose RSS passes its bound: V8's heap limit does not count
    ArrayBuffers, so a task can outgrow it without V8 noticing. The first reading is one
    interval after the task began: most tasks are over by then, and reading /proc on
    every dispatch cost more than the rest of the dispatch."""
    if slot.done.done() or not worker.alive:
        return
    rss = worker.rss()
    if rss > limit:
        log.warning(
            "worker %s RSS %d exceeds %d while running %s; killing it",
            worker.id,
            rss,
            limit,
            slot.frame.id,
        )
        worker.kill(
            (
                FailureReason.OUT_OF_MEMORY,
                f"the worker's memory ({rss} bytes resident) exceeded its bound "
                f"of {limit} bytes (the task's heap limit plus {margin} bytes; "
                "ArrayBuffers count here even though V8's heap limit ignores them)",
            )
        )
        return
    timers[0] = asyncio.get_running_loop().call_later(
        RSS_POLL_S, _check_memory, worker, slot, limit, margin, timers
    )
