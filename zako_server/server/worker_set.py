"""The pool's worker processes: started, pinned, replaced when lost, reclaimed when idle.

    start() ──▶ `min_workers` started and waited for; then maintenance, every second:
                keep `min_workers` alive, reclaim workers idle longer than
                `idle_timeout` down to the minimum, start workers for waiting tasks
    a task waits (pool.py) ──▶ one worker started for it in the background, up to max
    a worker exits ──▶ counted as crashed unless asked to (or closing) ──▶ replaced if wanted

Its own concern: keeping the processes (how many, on which CPU, how they are counted) is
apart from handing them to tasks, which pool.Pool adds to a WorkerSet; a worker that is
ready goes to the pool's `_offer`.

CPU pinning (`pin_cpus`; the app sets it only where the server owns its CPUs, see
heuristics.owns_cpus): each worker process is pinned to one of the CPUs the server may
use, the one fewest live workers are pinned to. A worker runs JavaScript on one thread at
a time (V8 runs --single-threaded: no background threads), but every eval is a hand-off
between two threads, its event loop and its isolate's; left to float, the scheduler puts
them on different CPUs and moves them, and each hand-off becomes a cross-CPU wake-up.
Pinned, on 2 CPUs with 1 worker, a trivial task cost the worker ~7 % less CPU and the
server ~10 % less, and one stream ran ~15 % more tasks per second (3 runs each way). The
server's own threads are left to the scheduler, which moves them off a busy worker's CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import Any

from zako_server.protocol import GcEvent
from zako_server.server.code_mirror import CodeCacheCounters, DigestMemo, SourceMirror
from zako_server.server.worker_handle import WorkerHandle

log = logging.getLogger("zako.pool")

_START_RETRY_DELAY_S = 0.5


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
    # Tasks a busy worker may hold queued behind the one it runs (prefetch, pool.py).
    prefetch: int = 1
    # Pin each worker process to one CPU (see the docstring).
    pin_cpus: bool = True
    # Settings.worker_brief_wait, passed to each worker (worker/evaluation.py).
    brief_wait: float = 0.002


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


class WorkerSet(ABC):
    """Starts, watches and replaces the worker processes, and reclaims idle ones; the
    pool (pool.Pool) hands them out."""

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
        # The CPUs this process may run on (cgroup cpusets and taskset included).
        self._cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []

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

    @abstractmethod
    def _offer(self, worker: WorkerHandle) -> None:
        """Hand on a worker that is ready: the pool's (pool.Pool._offer gives it to a
        waiting task or parks it)."""

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
            self._free_cpu(),
            self.settings.brief_wait,
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
        self._offer(worker)
        return worker

    def _free_cpu(self) -> int | None:
        """The CPU for a new worker: the one fewest live workers are pinned to, the
        highest of those (CPU 0 tends to take the most interrupts); None: no pinning."""
        if not self.settings.pin_cpus or len(self._cpus) < 2:
            return None
        load = dict.fromkeys(self._cpus, 0)
        for worker in self._workers.values():
            if worker.cpu in load and worker.alive:
                load[worker.cpu] += 1
        return min(reversed(self._cpus), key=load.__getitem__)

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
