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

Admission grants at most `max_workers` leases, so every `run` finds a worker soon. Among
idle workers, `affinity.choose` prefers one whose warm isolate fits the task.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zako_server.protocol import (
    DoneEvent,
    FailureReason,
    GcEvent,
    LogEvent,
    LogsEvent,
    ReuseKey,
    RunFrame,
    StartedEvent,
)
from zako_server.server.affinity import choose
from zako_server.server.code_mirror import CodeCacheCounters, DigestMemo, SourceMirror
from zako_server.server.worker_handle import WorkerHandle, lost_result

log = logging.getLogger("zako.pool")

# A task's started and log events, with the worker that runs it (for Started's worker id).
TaskSink = Callable[[StartedEvent | LogsEvent | LogEvent, WorkerHandle], None]

# Beyond the task's own timeout (which the worker enforces inside V8), how long the
# parent waits before it declares the worker hung and kills it.
_BACKSTOP_MARGIN_S = 2.0
_START_RETRY_DELAY_S = 0.5
# A task whose worker vanished before beginning it is dispatched again, this many times.
_DISPATCH_ATTEMPTS = 3
# How often a busy worker's resident memory is checked against its bound.
_RSS_POLL_S = 0.05


@dataclass(frozen=True)
class PoolSettings:
    """The slice of Settings the pool needs."""

    min_workers: int
    max_workers: int
    idle_timeout: float
    cancel_grace: float
    worker_start_timeout: float
    worker_rss_margin: int
    heartbeat_interval: float = 2.0
    heartbeat_timeout: float = 10.0
    # Bytes of module text each worker keeps by digest (code_mirror.py); 0: none.
    code_cache_bytes: int = 128 << 20


@dataclass(frozen=True)
class PoolStats:
    min_workers: int
    max_workers: int
    live: int
    busy: int
    idle: int
    starting: int
    started_total: int
    crashed_total: int
    reclaimed_total: int


class Pool:
    """Starts, hands out, watches and replaces worker processes."""

    def __init__(self, settings: PoolSettings) -> None:
        self.settings = settings
        self._workers: dict[str, WorkerHandle] = {}
        self._idle: deque[WorkerHandle] = deque()
        self._waiters: deque[asyncio.Future[WorkerHandle]] = deque()
        self._starting = 0
        self._ids = itertools.count(1)
        self._started_total = 0
        self._crashed_total = 0
        self._reclaimed_total = 0
        self._closing = False
        self._maintenance: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.v8_version = ""
        self.mini_racer_version = ""
        self.code_cache = CodeCacheCounters()
        self._digests = DigestMemo()

    async def start(self) -> None:
        """Start the warm minimum and wait until they are ready."""
        results = await asyncio.gather(
            *(self._start_worker() for _ in range(self.settings.min_workers)),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures and len(failures) == len(results):
            raise RuntimeError(f"no V8 worker could be started: {failures[0]}")
        self._maintenance = asyncio.create_task(self._maintain(), name="zako-pool-maintenance")

    async def run(self, frame: RunFrame, sink: TaskSink) -> DoneEvent:
        """Run one task on some worker and return its done event.

        Never raises for worker faults: a lost worker yields a `worker_lost` done
        event. A worker lost before it began the task (it was exiting, or died on
        receipt) costs nothing: the task goes to another worker, so no pool transition
        drops a task.
        """
        key = frame.reuse_key
        # A tree counts by its pack, the unit a worker holds it as (code_mirror.py).
        tree = (
            None
            if frame.tree_files is None
            else self._digests.pack(frame.tree_files, frame.tree_prepared).digest
        )
        for _ in range(_DISPATCH_ATTEMPTS):
            worker = await self._acquire(key, frame.digests, tree)
            result = await self._run_on(worker, frame, sink)
            lost = result.reason is FailureReason.WORKER_LOST
            if key is not None and not lost:
                worker.warm_key = key
            if not lost or worker.task_began_for(frame.id):
                return result
            log.warning(
                "worker %s was lost before it began task %s; dispatching again",
                worker.id,
                frame.id,
            )
        return result

    async def _run_on(self, worker: WorkerHandle, frame: RunFrame, sink: TaskSink) -> DoneEvent:
        started = False

        def forward(event: StartedEvent | LogsEvent | LogEvent) -> None:
            nonlocal started
            if isinstance(event, StartedEvent):
                if started:
                    return
                started = True
            sink(event, worker)

        task_id = frame.id
        try:
            result_future = await worker.run(frame, forward)
        except ConnectionError as exc:
            worker.mark_broken()
            self._release(worker)
            return lost_result(task_id, f"could not reach worker {worker.id}: {exc}")
        # The memory bound and the backstop are loop timers, not tasks: a task per
        # dispatch plus its cancellation was a sizeable part of the server's CPU per task.
        loop = result_future.get_loop()
        # The module texts the worker keeps for later tasks (code_mirror.py) are its
        # own memory, not the task's: they raise the bound rather than eat the margin.
        kept = 0 if worker.sources is None else worker.sources.bytes
        rss_limit = frame.max_heap_bytes + self.settings.worker_rss_margin + kept
        watch: list[asyncio.TimerHandle] = []  # the memory check's current timer
        watch.append(
            loop.call_later(_RSS_POLL_S, self._check_memory, worker, task_id, rss_limit, watch)
        )
        backstop = frame.timeout_s + self.settings.cancel_grace + _BACKSTOP_MARGIN_S
        overdue = loop.call_later(backstop, self._kill_overdue, worker, task_id, frame.timeout_s)
        done = worker.current_done
        assert done is not None
        try:
            result = await result_future
        except asyncio.CancelledError:
            # The caller went away: stop the task, and make sure the worker is not
            # handed out again while it may still be running it.
            await self._stop_running(worker, task_id, done)
            raise
        finally:
            watch[0].cancel()
            overdue.cancel()
        if result.reason is FailureReason.WORKER_LOST:
            worker.mark_broken()
        self._release(worker)
        return result

    def _kill_overdue(self, worker: WorkerHandle, task_id: str, timeout: float) -> None:
        """The backstop: the worker enforces the timeout inside V8; if it did not, kill it
        (its done future then resolves with this verdict)."""
        if worker.task_id != task_id or not worker.alive:
            return
        log.error(
            "worker %s ignored the %.1fs timeout of task %s; killing it",
            worker.id,
            timeout,
            task_id,
        )
        worker.kill(
            (
                FailureReason.TIMEOUT,
                f"the task ran past its {timeout:g}s timeout "
                "and its worker did not stop it; the worker was killed",
            )
        )

    def _check_memory(
        self, worker: WorkerHandle, task_id: str, limit: int, watch: list[asyncio.TimerHandle]
    ) -> None:
        """Kill a worker whose RSS passes its bound: V8's heap limit does not count
        ArrayBuffers, so a task can outgrow it without V8 noticing. The first reading is
        one interval after dispatch: most tasks are over by then, and reading /proc on
        every dispatch cost more than the rest of the dispatch."""
        if worker.task_id != task_id or not worker.alive:
            return
        rss = worker.rss()
        if rss > limit:
            log.warning(
                "worker %s RSS %d exceeds %d while running %s; killing it",
                worker.id,
                rss,
                limit,
                task_id,
            )
            worker.kill(
                (
                    FailureReason.OUT_OF_MEMORY,
                    f"the worker's memory ({rss} bytes resident) exceeded its bound "
                    f"of {limit} bytes (the task's heap limit plus "
                    f"{self.settings.worker_rss_margin} bytes; ArrayBuffers count "
                    "here even though V8's heap limit ignores them)",
                )
            )
            return
        watch[0] = asyncio.get_running_loop().call_later(
            _RSS_POLL_S, self._check_memory, worker, task_id, limit, watch
        )

    async def cancel(self, task_id: str, frame: RunFrame | None = None) -> bool:
        """Ask the worker running `task_id` (that `frame`, if given: two tenants may use
        one id) to stop it; kill the worker if it does not answer within the cancel
        grace. False when no worker runs that task."""
        for worker in list(self._workers.values()):
            if (
                worker.task_id == task_id
                and (frame is None or worker.frame is frame)
                and worker.state == "busy"
            ):
                task = asyncio.create_task(self._cancel_with_grace(worker, task_id))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
                return True
        return False

    async def broadcast_gc(self, timeout: float) -> list[tuple[WorkerHandle, GcEvent]]:
        """Every live worker collects; busy ones right after their task."""
        workers = [w for w in self._workers.values() if w.state in {"idle", "busy"}]

        async def one(worker: WorkerHandle) -> GcEvent | None:
            try:
                return await asyncio.wait_for(worker.gc(), timeout)
            except (ConnectionError, asyncio.TimeoutError):
                return None

        replies = await asyncio.gather(*(one(w) for w in workers))
        return [(w, r) for w, r in zip(workers, replies, strict=True) if r is not None]

    def statistics(self) -> PoolStats:
        states = [w.state for w in self._workers.values()]
        return PoolStats(
            min_workers=self.settings.min_workers,
            max_workers=self.settings.max_workers,
            live=sum(s in {"idle", "busy", "starting"} for s in states),
            busy=states.count("busy"),
            idle=states.count("idle"),
            starting=self._starting,
            started_total=self._started_total,
            crashed_total=self._crashed_total,
            reclaimed_total=self._reclaimed_total,
        )

    def workers(self) -> list[WorkerHandle]:
        return list(self._workers.values())

    async def close(self, timeout: float = 2.0) -> None:
        """Stop every worker: ask politely, then kill what is left after `timeout`."""
        self._closing = True
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(RuntimeError("worker pool is closed"))
                waiter.exception()
        await asyncio.gather(
            *(w.stop(timeout) for w in list(self._workers.values())), return_exceptions=True
        )
        for task in list(self._background):
            task.cancel()

    # -- internals -----------------------------------------------------------------

    def _live_or_starting(self) -> int:
        return sum(w.state in {"starting", "idle", "busy"} for w in self._workers.values())

    async def _acquire(
        self,
        key: ReuseKey | None = None,
        digests: dict[str, str] | None = None,
        tree: str | None = None,
    ) -> WorkerHandle:
        """An idle worker, preferring one warm for `key` or holding the task's module
        texts or tree pack (see affinity), else wait."""
        index = choose(self._idle, key, digests, tree)
        if index >= 0:
            worker = self._idle[index]
            del self._idle[index]
            # Entries no longer idle (lost, stopping) are dropped as FIFO order reaches them.
            while self._idle and self._idle[0].state != "idle":
                self._idle.popleft()
            return worker
        self._idle.clear()  # none idle: every entry left is stale
        if self._closing:
            raise RuntimeError("worker pool is closed")
        waiter: asyncio.Future[WorkerHandle] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._top_up()
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release(waiter.result())
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def _release(self, worker: WorkerHandle) -> None:
        """A worker finished a task (or was never used): hand it to a waiter or park it."""
        worker.finish_task()
        if worker.state != "idle":
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                worker.state = "idle"
                waiter.set_result(worker)
                return
        self._idle.append(worker)

    def _top_up(self) -> None:
        """Start workers for waiting tasks (one each, up to max) and for the minimum."""
        if self._closing:
            return
        live = self._live_or_starting()
        pending_waiters = sum(not w.done() for w in self._waiters)
        wanted = max(self.settings.min_workers - live, pending_waiters - self._starting, 0)
        wanted = min(wanted, self.settings.max_workers - live)
        for _ in range(wanted):
            task = asyncio.create_task(self._start_in_background())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _start_in_background(self) -> None:
        try:
            await self._start_worker()
        except Exception as exc:
            log.error("a V8 worker failed to start: %s", exc)
            await asyncio.sleep(_START_RETRY_DELAY_S)
            self._top_up()

    async def _start_worker(self) -> WorkerHandle:
        worker = WorkerHandle(
            f"w{next(self._ids)}",
            self._on_worker_exit,
            (self.settings.heartbeat_interval, self.settings.heartbeat_timeout),
            SourceMirror(self.settings.code_cache_bytes, self.code_cache, self._digests),
        )
        self._workers[worker.id] = worker
        self._starting += 1
        try:
            await worker.start(self.settings.worker_start_timeout)
        except BaseException:
            self._workers.pop(worker.id, None)
            raise
        finally:
            self._starting -= 1
        self._started_total += 1
        self.v8_version = self.v8_version or worker.v8_version
        self.mini_racer_version = self.mini_racer_version or worker.mini_racer_version
        log.debug("worker %s started (pid %s)", worker.id, worker.pid)
        self._release(worker)
        return worker

    def _on_worker_exit(self, worker: WorkerHandle) -> None:
        if self._workers.pop(worker.id, None) is None:
            return
        with contextlib.suppress(ValueError):
            self._idle.remove(worker)
        if not worker.exit_expected and not self._closing:
            self._crashed_total += 1
            log.warning(
                "worker %s (pid %s) exited unexpectedly; replacing it", worker.id, worker.pid
            )
        self._top_up()

    async def _stop_running(
        self, worker: WorkerHandle, task_id: str, done: asyncio.Future[DoneEvent]
    ) -> None:
        with contextlib.suppress(ConnectionError):
            await worker.cancel(task_id)
        try:
            await asyncio.wait_for(asyncio.shield(done), self.settings.cancel_grace)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            worker.kill()
        if done.done():
            self._release(worker)
        else:
            # Killed: the reader resolves `done` when the process is gone; release then.
            done.add_done_callback(lambda _: self._release(worker))

    async def _cancel_with_grace(self, worker: WorkerHandle, task_id: str) -> None:
        done = worker.current_done
        try:
            await worker.cancel(task_id)
        except ConnectionError:
            return
        if done is None:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(done), self.settings.cancel_grace)
        if not done.done() and worker.alive:
            log.warning(
                "worker %s did not stop task %s within %.1fs; killing it",
                worker.id,
                task_id,
                self.settings.cancel_grace,
            )
            worker.kill()

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.settings.idle_timeout / 2))
            now = time.monotonic()
            live = self._live_or_starting()
            for worker in list(self._idle):
                if live <= self.settings.min_workers:
                    break
                if worker.state == "idle" and now - worker.idle_since > self.settings.idle_timeout:
                    self._idle.remove(worker)
                    self._reclaimed_total += 1
                    live -= 1
                    task = asyncio.create_task(worker.stop(2.0))
                    self._background.add(task)
                    task.add_done_callback(self._background.discard)
            self._top_up()
