"""Supervisor of the V8 worker processes.

    run(job) ──▶ idle worker? ──yes──▶ worker.run ──▶ done ──▶ worker back to idle
                     │ no                                     (or replaced if lost)
                     ▼
               below max? ──yes──▶ start one in the background
                     │
                     ▼
               wait for the next worker that becomes idle (any worker, so a task
               never waits on one that failed to start)

    maintenance (every second): keep `min_workers` alive, reclaim workers idle longer
    than `idle_timeout` down to the minimum, start workers for waiting tasks.

Starting, replacing and reclaiming workers, the maintenance and CPU pinning are
worker_set.py's (WorkerSet); Pool extends it with handing workers out to tasks.

Admission grants at most `max_workers x (1 + prefetch)` leases, so every `run` finds a
worker, or a place queued behind a busy one, soon. Among idle workers, `affinity.choose`
prefers one whose warm isolate fits the task.

Prefetch (slots.Slot): with no worker idle and none left to start, a task may be sent to
a busy worker whose running task began moments ago, to run right after it. A trivial
task costs a worker well under a millisecond, about what the round trip from its done
event to the next frame takes, so without a next task in its pipe a worker sat idle for
a share of every task. Queueing only behind a task that began within
`_PREFETCH_RECENT_S` bounds what a queued task can lose to a long-running one; its memory
watch and backstop start when the worker says it began, not when it was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from zako_server.protocol import (
    DoneEvent,
    FailureReason,
    LogEvent,
    LogsEvent,
    ReuseKey,
    RunFrame,
    StartedEvent,
)
from zako_server.server.affinity import choose
from zako_server.server.errors import QueueDeadlineExceeded
from zako_server.server.slots import Slot, lost_result
from zako_server.server.watchdog import Watchdog
from zako_server.server.worker_handle import WorkerHandle
from zako_server.server.worker_set import PoolSettings, WorkerSet

log = logging.getLogger("zako.pool")

# A task's started and log events, with the worker that runs it (for Started's worker id).
TaskSink = Callable[[StartedEvent | LogsEvent | LogEvent, WorkerHandle], None]

# A task whose worker vanished before beginning it is dispatched again, this many times.
_DISPATCH_ATTEMPTS = 3
# A task is queued behind a busy worker only if the task that worker runs began at most
# this long ago: past that, the round trip prefetch hides is a small part of a task's time,
# and a task that has run long may run much longer.
_PREFETCH_RECENT_S = 0.01


class Pool(WorkerSet):
    """Starts, hands out, watches and replaces worker processes (the starting, watching
    and replacing are WorkerSet's)."""

    def __init__(self, settings: PoolSettings) -> None:
        super().__init__(settings)
        # Told when a worker becomes busy and so can queue a task (admission.regrant).
        self.on_spare: Callable[[], None] | None = None
        # The memory watch and the backstop (watchdog.py), woken when a worker says it
        # began a task: queued behind another, it is not running yet.
        self._watchdog = Watchdog(
            self._workers.values, settings.worker_rss_margin, settings.cancel_grace
        )

    async def close(self, timeout: float = 2.0) -> None:
        await super().close(timeout)
        self._watchdog.close()  # after the workers: a task may begin while they stop

    async def run(
        self, frame: RunFrame, sink: TaskSink, deadline: float | None = None
    ) -> DoneEvent:
        """Run one task on some worker and return its done event.

        Never raises for worker faults: a lost worker yields a `worker_lost` done
        event. A worker lost before it began the task (it was exiting, or died on
        receipt, or the task was queued behind another) costs nothing: the task goes to
        another worker, so no pool transition drops a task. `deadline` (monotonic): when
        the task must have begun; still waiting for a worker, or queued behind a busy
        one, past it, the task is withdrawn and QueueDeadlineExceeded raised, as
        admission does for its queue.
        """
        key = frame.reuse_key
        # A tree counts by its pack, the unit a worker holds it as (code_mirror.py).
        tree = (
            None
            if frame.tree_files is None
            else self._digests.pack(frame.tree_files, frame.tree_prepared).digest
        )
        attempts = 0
        while True:
            worker = await self._acquire(frame.id, key, frame.digests, tree, deadline)
            result, slot = await self._run_on(worker, frame, sink, deadline)
            if (
                slot is not None
                and slot.withdrawn is not None
                and not slot.began
                and not slot.cancelled
            ):
                if slot.withdrawn == "deadline":
                    raise QueueDeadlineExceeded(
                        "the task waited behind a busy worker's task and its queue "
                        "deadline passed before that worker was free; it did not run"
                    )
                continue  # taken back for a worker that went idle: dispatch again
            lost = result.reason is FailureReason.WORKER_LOST
            if key is not None and not lost:
                worker.warm_key = key
            attempts += 1
            if not lost or (slot is not None and slot.began) or attempts >= _DISPATCH_ATTEMPTS:
                return result
            log.warning(
                "worker %s was lost before it began task %s; dispatching again",
                worker.id,
                frame.id,
            )

    async def _run_on(
        self, worker: WorkerHandle, frame: RunFrame, sink: TaskSink, deadline: float | None
    ) -> tuple[DoneEvent, Slot | None]:
        """The task's done event on `worker`, and its slot (None: nothing was sent)."""
        started = False

        def forward(event: StartedEvent | LogsEvent | LogEvent) -> None:
            nonlocal started
            if isinstance(event, StartedEvent):
                if started:
                    return
                started = True
            sink(event, worker)

        try:
            slot = worker.run(frame, forward, self._watchdog.wake)
        except ConnectionError as exc:
            worker.mark_broken()
            self._offer(worker)
            return lost_result(frame.id, f"could not reach worker {worker.id}: {exc}"), None
        expiry: asyncio.TimerHandle | None = None
        if len(worker.slots) == 1:
            if self.on_spare is not None and self.settings.prefetch:
                self.on_spare()  # it can take a task behind this one now
        elif deadline is not None:  # queued: it must still begin by its deadline
            expiry = asyncio.get_running_loop().call_at(deadline, worker.withdraw, slot, "deadline")
        try:
            try:
                await worker.drained()
            except ConnectionError:
                worker.mark_broken()  # its loss settles the slot
            result = await slot.result
        except asyncio.CancelledError:
            # The caller went away: stop the task, and make sure the worker is not
            # handed out again while it may still be running it.
            await self._stop_running(worker, slot)
            raise
        finally:
            if expiry is not None:
                expiry.cancel()
        if result.reason is FailureReason.WORKER_LOST:
            worker.mark_broken()
        self._release(worker, slot)
        return result, slot

    def cancel(self, task_id: str, frame: RunFrame | None = None) -> bool:
        """Ask the worker holding `task_id` (that `frame`, if given: two tenants may use
        one id), running or queued, to stop it; kill the worker if it does not answer
        within the cancel grace. False when no worker holds that task."""
        for worker in list(self._workers.values()):
            for slot in worker.slots:
                if (
                    slot.frame.id == task_id
                    and (frame is None or slot.frame is frame)
                    and not slot.done.done()
                ):
                    slot.cancelled = True
                    task = asyncio.create_task(self._cancel_with_grace(worker, slot))
                    self._background.add(task)
                    task.add_done_callback(self._background.discard)
                    return True
        return False

    # -- internals -----------------------------------------------------------------

    async def _acquire(
        self,
        task_id: str,
        key: ReuseKey | None = None,
        digests: dict[str, str] | None = None,
        tree: str | None = None,
        deadline: float | None = None,
    ) -> WorkerHandle:
        """An idle worker, preferring one warm for `key` or holding the task's module
        texts or tree pack (see affinity); else a place queued behind a busy one
        (prefetch); else wait, until `deadline` at most (QueueDeadlineExceeded).

        The wait needs the deadline of its own: admission grants a lease beyond its
        worker capacity when a busy worker can queue a task (spare_slots), but that
        worker may no longer take one by the time the task gets here (its task began
        more than _PREFETCH_RECENT_S ago), and the task then waits here, out of
        admission's sight, for as long as that task runs."""
        index = choose(self._idle, key, digests, tree)
        if index >= 0:
            worker = self._idle[index]
            del self._idle[index]
            # Entries no longer idle (lost, stopping) are dropped as FIFO order reaches them.
            while self._idle and self._idle[0].state != "idle":
                self._idle.popleft()
            return worker
        self._idle.clear()  # none idle: every entry left is stale
        queued = self._queue_behind(task_id, key)
        if queued is not None:
            return queued
        if self._closing:
            raise RuntimeError("worker pool is closed")
        loop = asyncio.get_running_loop()
        while True:
            waiter: asyncio.Future[WorkerHandle] = loop.create_future()
            self._waiters.append(waiter)
            self._top_up()
            expiry = None if deadline is None else loop.call_at(deadline, _expire, waiter)
            try:
                worker = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                    self._offer(waiter.result())
                raise
            finally:
                if expiry is not None:
                    expiry.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if worker.state == "idle" or self._may_queue(worker, task_id):
                return worker
            self._offer(worker)  # it holds this task's id already: for another waiter

    def spare_slots(self) -> int:
        """Places busy workers can queue a task in right now (prefetch): admission grants
        them beyond its workers capacity, so a queued task is still ordered, and timed
        out, by admission rather than waiting here."""
        if not self._prefetching():
            return 0
        now = time.monotonic()
        depth = 1 + self.settings.prefetch
        return sum(
            depth - len(w.slots)
            for w in self._workers.values()
            if w.can_queue(None, depth, _PREFETCH_RECENT_S, now)
        )

    def _prefetching(self) -> bool:
        """Only when no worker can be started: a new worker serves a task sooner than one
        busy with another, and a pool that queued instead would never scale up."""
        return (
            self.settings.prefetch > 0
            and not self._closing
            and self._live_or_starting() >= self.settings.max_workers
        )

    def _may_queue(self, worker: WorkerHandle, task_id: str | None) -> bool:
        depth = 1 + self.settings.prefetch
        return worker.can_queue(task_id, depth, _PREFETCH_RECENT_S, time.monotonic())

    def _queue_behind(self, task_id: str, key: ReuseKey | None) -> WorkerHandle | None:
        """A busy worker to queue the task behind (prefetch), or None: the one whose
        isolate will be warm for it, else the one whose task began last."""
        if not self._prefetching():
            return None
        now = time.monotonic()
        depth = 1 + self.settings.prefetch
        best: WorkerHandle | None = None
        best_at = -1.0
        for worker in self._workers.values():
            if not worker.can_queue(task_id, depth, _PREFETCH_RECENT_S, now):
                continue
            if key is not None and worker.slots[-1].frame.reuse_key == key:
                return worker  # its isolate will be warm for this task
            first = worker.slots[0]
            began_at = first.began_at if first.began else now
            if began_at > best_at:
                best, best_at = worker, began_at
        return best

    def _release(self, worker: WorkerHandle, slot: Slot) -> None:
        """A worker finished a task: hand it on (see `_offer`)."""
        worker.finish(slot)
        self._offer(worker)

    def _offer(self, worker: WorkerHandle) -> None:
        """Hand an idle worker to a waiter or park it; a busy one with room in its queue
        goes to a waiter too (prefetch), or nowhere: its next release offers it again.
        A broken one goes nowhere: its exit brings a replacement."""
        if worker.broken:
            return
        if worker.state == "idle":
            if not self._hand_to_waiter(worker):
                self._idle.append(worker)
                self._steal()
        elif self.settings.prefetch and self._waiters and self._may_queue(worker, None):
            self._hand_to_waiter(worker)

    def _hand_to_waiter(self, worker: WorkerHandle) -> bool:
        """Give `worker` to the first task still waiting for one; False: none waits."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(worker)
                return True
        return False

    def _steal(self) -> None:
        """A worker went idle with no task waiting: take back one task queued behind
        another worker's long-running one (its runner then dispatches it again, to an
        idle worker). The running task began more than `_PREFETCH_RECENT_S` ago when the
        queued one was sent behind it, or has run that long since."""
        now = time.monotonic()
        for worker in self._workers.values():
            slots = worker.slots
            if len(slots) < 2 or not slots[0].began:
                continue
            if now - slots[0].began_at > _PREFETCH_RECENT_S:
                worker.withdraw(slots[-1], "steal")
                return

    async def _stop_running(self, worker: WorkerHandle, slot: Slot) -> None:
        with contextlib.suppress(ConnectionError):
            await worker.cancel(slot.frame)
        try:
            await asyncio.wait_for(asyncio.shield(slot.done), self.settings.cancel_grace)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            worker.kill()
        if slot.done.done():
            self._release(worker, slot)
        else:
            # Killed: the reader resolves `done` when the process is gone; release then.
            slot.done.add_done_callback(lambda _: self._release(worker, slot))

    async def _cancel_with_grace(self, worker: WorkerHandle, slot: Slot) -> None:
        try:
            await worker.cancel(slot.frame)
        except ConnectionError:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(slot.done), self.settings.cancel_grace)
        if not slot.done.done() and worker.alive:
            log.warning(
                "worker %s did not stop task %s within %.1fs; killing it",
                worker.id,
                slot.frame.id,
                self.settings.cancel_grace,
            )
            worker.kill()


def _expire(waiter: asyncio.Future[WorkerHandle]) -> None:
    if not waiter.done():
        waiter.set_exception(
            QueueDeadlineExceeded(
                "the task waited for a worker past its queue deadline; it did not run"
            )
        )
