"""The supervisor's watch over running tasks: their workers' memory and a backstop.

    a worker says it began a task ──wake()──▶ one tick every RSS_POLL_S, over every worker:
        its running task past timeout + cancel grace + margin ──▶ kill (backstop)
        its running task older than RSS_POLL_S ──▶ read its RSS; past the bound ──▶ kill
    no worker runs a task at a tick ──▶ the ticks stop until the next wake()

One loop timer for the whole pool, not timers per task. The per-task timers cost more
than their own calls (asyncio orders its timer heap with a Python `__lt__`, ~13 calls a
task under load): the closure that armed them, held by the task's slot, held the slot
in turn, so every task left a reference cycle (slot, frame, futures, done event: ~25
objects) for the cyclic collector. Without them the server leaves none, and counts
~60-90k instructions less a trivial task on one stream (~1,115k -> 1,026-1,055k) and
~210k less a sequential unary call (1,639k -> 1,427k), mostly collector work
(callgrind, the server alone, its tick period scaled to valgrind's pace). The watch
starts when the worker says it began the task, not when it was sent: a task queued
behind another on its worker (prefetch, pool.py) is not running yet. A task's first
memory reading comes 50-100 ms after it began (most tasks are over by then: reading
/proc on every dispatch cost more than the rest of the dispatch), its backstop up to
one tick late. Either ends by killing the worker, with a verdict on the task it ran
(WorkerHandle.kill's reason), which the worker's loss then reports.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from zako_server.protocol import FailureReason
from zako_server.server.slots import Slot
from zako_server.server.worker_handle import WorkerHandle

log = logging.getLogger("zako.pool")

# Beyond the task's own timeout (which the worker enforces inside V8), how long the
# parent waits before it declares the worker hung and kills it.
BACKSTOP_MARGIN_S = 2.0
# How often a busy worker's resident memory is checked against its bound.
RSS_POLL_S = 0.05


def running(worker: WorkerHandle) -> Slot | None:
    """The task `worker` runs now: the first slot it began and has not ended (its head
    may have ended already while the pool has yet to take its done event)."""
    for slot in worker.slots:
        if slot.began and not slot.done.done():
            return slot
    return None


class Watchdog:
    """Ticks while any worker runs a task, and kills a worker whose task outgrew its
    memory bound or outlived its timeout by the backstop."""

    def __init__(
        self,
        workers: Callable[[], Iterable[WorkerHandle]],
        rss_margin: int,
        cancel_grace: float,
    ) -> None:
        self._workers = workers
        self._rss_margin = rss_margin
        self._cancel_grace = cancel_grace
        self._timer: asyncio.TimerHandle | None = None

    def wake(self) -> None:
        """A worker began a task: tick, if not ticking already."""
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(RSS_POLL_S, self.tick)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def tick(self) -> None:
        """One pass over the workers; the next tick only if one of them runs a task."""
        self._timer = None
        now = time.monotonic()
        watching = False
        for worker in list(self._workers()):
            slot = running(worker) if worker.alive and worker.kill_reason is None else None
            if slot is None:
                continue
            watching = True
            ran = now - slot.began_at
            if ran > slot.frame.timeout_s + self._cancel_grace + BACKSTOP_MARGIN_S:
                _kill_overdue(worker, slot)
            elif ran >= RSS_POLL_S:
                _check_memory(worker, slot, self._rss_margin)
        if watching:
            self.wake()


def _kill_overdue(worker: WorkerHandle, slot: Slot) -> None:
    """The backstop: the worker enforces the timeout inside V8; if it did not, kill it
    (its done future then resolves with this verdict)."""
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


def _check_memory(worker: WorkerHandle, slot: Slot, margin: int) -> None:
    """Kill a worker whose RSS passes its bound: V8's heap limit does not count
    ArrayBuffers, so a task can outgrow it without V8 noticing."""
    # The module texts the worker keeps for later tasks (code_mirror.py) are its own
    # memory, not the task's: they raise the bound rather than eat the margin.
    kept = 0 if worker.sources is None else worker.sources.bytes
    limit = slot.frame.max_heap_bytes + margin + kept
    rss = worker.rss()
    if rss <= limit:
        return
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
