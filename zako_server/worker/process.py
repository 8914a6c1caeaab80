"""The V8 worker process (`python -m zako_server.worker`), driven over pipes
(protocol.py, framed by codec.py).

This module is the frame loop and the process's lifecycle: run, cancel, gc, exit and
ping frames, the queue of runs, which isolate a task gets, and its started and done
events. What happens in the isolate between those two events is driver.py's.

Why it is built this way:
- A task runs in a fresh MiniRacer, or, when the server allows it, in the warm one its
  tenant's previous task left, hardened, its reset deferred into this task's eval
  (isolates.py says why). A spare is made (prelude installed) right after a task's done
  event, off the request path.
- The common case is one round trip into V8 per task (reset, configure, compile, start,
  first report), a call of the prelude's task function that compiles nothing
  (Instance.run), and a warm isolate saves the ~4 ms an isolate costs: together a
  trivial task's worker CPU drops from about 5 ms to a fraction of one.
- Collections (idle, or a GcFrame) run in the run loop, between tasks: they reset the
  warm isolate first, an eval of its own that a task must not overlap.
- The warm isolate's reset is deferred only into a task of its own key (its tenant's),
  the next in line: before a task of another key, or SETTLE_AFTER_S into an idle spell,
  it resets the warm isolate in an eval of its own, under RESET_TIMEOUT_S (settle). A
  task's leftover microtasks (a chain that never ends) are so stopped within that bound
  and never share the worker's CPU with another tenant's task; at worst they delay the
  next task of the same tenant, which then times out on its own clock.
- Task code only ever runs inside an eval the driver started and can cancel (driver.py),
  so it never blocks this loop.
- A PingFrame is answered at once from the frame reader, idle or busy: task code runs
  in V8 off this loop, so a worker that does not answer is stopped or hung.
- An isolate that may still be running task code (an abandoned eval; V8 runs microtasks
  after an eval has returned) gets no blocking call (heap stats, GC), only close(), which
  terminates whatever it runs.
- Python is the authority on the outcome: exactly one done per run, whatever the task
  does to the prelude, and "internal" when this code itself fails.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from importlib import metadata
from typing import Any

import psutil

from zako_server import codec
from zako_server.protocol import (
    CancelFrame,
    ChildEvent,
    DoneEvent,
    ExitFrame,
    FailureReason,
    Frame,
    GcEvent,
    GcFrame,
    HeapFigures,
    JsError,
    PingFrame,
    PongEvent,
    ReadyEvent,
    ReuseKey,
    RunFrame,
    StartedEvent,
    WithdrawFrame,
)
from zako_server.worker import jserrors, runtime
from zako_server.worker.driver import ResetFailed, RetryFresh, TaskDriver
from zako_server.worker.evaluation import BRIEF_WAIT_S
from zako_server.worker.idle import IdleClock
from zako_server.worker.isolates import Isolates, retiring, task_heap
from zako_server.worker.runtime import Instance
from zako_server.worker.sources import SourceStore
from zako_server.worker.task import MissingSources, RunningTask


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


class Worker:
    def __init__(self, frame_fd: int, brief_wait: float = BRIEF_WAIT_S) -> None:
        self._fd = frame_fd
        self._isolates = Isolates(brief_wait)
        self._runs: deque[RunFrame] = deque()
        self._wakeup = asyncio.Event()
        self._current: RunningTask | None = None
        self._gc_pending = 0
        self._stopping = False
        self._driver = TaskDriver(self.send, _version("zako"))
        self._ran_since_collect = False
        self._idle_due = False  # set IDLE_COLLECT_S into an idle spell; the run loop collects
        self._settle_due = False  # set SETTLE_AFTER_S into an idle spell (isolates.settle)
        self._clock = IdleClock(self._settle_now, self._idle)
        # Module texts by digest, as the parent mirrors them (sources.py).
        self._store = SourceStore()

    # ---- frames -----------------------------------------------------------------------
    def send(self, event: ChildEvent) -> None:
        # A blocking write keeps frames whole and ordered; the parent always reads.
        view = memoryview(codec.encode(event))
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    # ---- main loop ---------------------------------------------------------------------
    async def serve(self) -> int:
        self._isolates.prepare()
        spare = self._isolates.spare
        assert spare is not None
        # Past V8's own heap limit an isolate aborts the whole process, so the hard limit
        # (which mini-racer enforces by terminating the task) must stay below it.
        v8_limit = (spare.heap() or {}).get("limit", 0)
        self._driver.heap_cap = int(v8_limit * 0.9) if v8_limit else None
        self.send(ReadyEvent(os.getpid(), spare.mr.v8_version, _version("mini-racer")))
        loop = asyncio.get_running_loop()
        ended: asyncio.Future[int] = loop.create_future()
        transport, _ = await loop.connect_read_pipe(
            lambda: _FrameReader(self._frames_in, ended), sys.stdin
        )
        runner = asyncio.create_task(self._run_loop())
        try:
            status = await ended
        finally:
            transport.close()
        self._stopping = True
        if self._current is not None:
            self._current.stop("the worker is exiting")
        self._wakeup.set()
        await runner
        self._isolates.close()
        return status

    def _frames_in(self, bodies: list[bytes]) -> bool:
        """Handle frames as they are read (several per read when they came together);
        False once an ExitFrame says to stop."""
        for body in bodies:
            try:
                frame = codec.decode(body)
            except codec.BadFrame as exc:
                self._bad_frame(exc)
                continue
            if isinstance(frame, ExitFrame):
                return False
            self._dispatch(frame)
        return True

    def _dispatch(self, frame: Frame) -> None:
        if isinstance(frame, RunFrame):
            try:
                self._store.receive(frame)  # at arrival: the parent's mirror is per frame
            except (TypeError, AttributeError, ValueError, KeyError) as exc:
                # not str values (parse() says so), or a tree pack that is not one
                print(f"zako worker: malformed sources in run {frame.id}: {exc!r}", file=sys.stderr)
            self._runs.append(frame)
            self._wakeup.set()
        elif isinstance(frame, CancelFrame):
            job = self._current
            if job is not None and job.id == frame.id:
                job.stop()
            else:
                for queued in list(self._runs):
                    if queued.id == frame.id:
                        self._runs.remove(queued)
                        self._not_run(queued.id, "task was cancelled before it started")
        elif isinstance(frame, WithdrawFrame):
            for queued in self._runs:
                if queued.id == frame.id:
                    self._runs.remove(queued)
                    self._not_run(queued.id, "task was withdrawn before it started")
                    break
        elif isinstance(frame, PingFrame):
            self.send(PongEvent(frame.seq))
        elif isinstance(frame, GcFrame):
            # The run loop collects: at once when idle, else after the current task (a
            # run that has arrived but not yet started counts as busy: the parent already
            # sees this worker as running it, and expects gc after that task).
            self._gc_pending += 1
            self._wakeup.set()
        else:
            print(f"zako worker: ignoring a {type(frame).__name__} frame", file=sys.stderr)

    def _bad_frame(self, exc: codec.BadFrame) -> None:
        """A malformed run still gets its one done (internal); anything else is skipped."""
        print(f"zako worker: {exc}", file=sys.stderr)
        if exc.tag == "run" and exc.id is not None:
            self.send(
                self._done_failed(
                    exc.id, FailureReason.INTERNAL, jserrors.make_error("InternalError", str(exc))
                )
            )

    async def _run_loop(self) -> None:
        while True:
            while not self._runs and not self._stopping:
                if self._gc_pending:
                    await self._collect_pending()
                    continue
                if self._settle_due and self._isolates.unsettled(None):
                    await self._isolates.settle(None)
                    continue
                self._wakeup.clear()
                self._clock.begin(self._isolates.unsettled(None), self._ran_since_collect)
                await self._wakeup.wait()
                self._clock.end()
                if self._idle_due and not self._runs and not self._stopping:
                    await self._idle_collect()
                self._idle_due = False
            if self._stopping:
                self._clock.close()
                for frame in self._runs:
                    self._not_run(frame.id, "the worker is exiting")
                self._runs.clear()
                return
            self._settle_due = False
            key = self._runs[0].reuse_key
            if self._isolates.unsettled(key):
                await self._isolates.settle(key)
                continue  # the line may have changed meanwhile (a cancel, a withdraw)
            await self._run(self._runs.popleft())
            self._ran_since_collect = True
            await self._collect_pending()

    def _not_run(self, task_id: str, why: str) -> None:
        self.send(
            self._done_failed(
                task_id, FailureReason.CANCELLED, jserrors.make_error("CancelledError", why)
            )
        )

    @staticmethod
    def _done_failed(
        task_id: str, reason: FailureReason, error: JsError, logs_dropped: int = 0
    ) -> DoneEvent:
        """The done event of a task that never ran in an isolate (no figures to report)."""
        return DoneEvent(
            task_id, 0.0, 0.0, HeapFigures(), logs_dropped, False, reason=reason, error=error
        )

    # ---- one task ----------------------------------------------------------------------
    async def _run(self, frame: RunFrame) -> None:
        task_id = frame.id
        cpu0, wall0 = time.process_time(), time.perf_counter()
        self.send(StartedEvent(task_id))
        job: RunningTask | None = None
        instance: Instance | None = None
        key: ReuseKey | None = None
        try:
            job = RunningTask.parse(frame, self._store)
            self._current = job
            key = job.key
            instance, warm = self._isolates.take(key)
            left: float | None = None
            while True:
                try:
                    outcome = await self._driver.supervise(instance, job, left)
                    break
                except ResetFailed:
                    # The warm isolate refused its reset; nothing of the task ran.
                    instance.close()
                    instance, warm = self._isolates.take(key)  # the spare now
                except RetryFresh:
                    # Nothing of it was sent yet: run it again as if reuse were off.
                    instance.close()
                    instance, warm = self._isolates.take(None)
                    key = job.key = None
                    job.hardened = False
                left = max(job.timeout_s - (time.perf_counter() - wall0), 0.001)
            closing = key is None or retiring(
                instance, outcome.reason, frame.reuse_max_tasks, instance.uses + 1
            )
            # CPU, not wall time, says how much JavaScript ran: on a busy machine a
            # trivial task spends milliseconds descheduled, and took a reading for it.
            heap = await task_heap(instance, time.process_time() - cpu0, closing) or HeapFigures()
            heap.limit = job.max_heap_bytes
            if job.dropped:
                batch: list[list[Any]] = []
                self._driver.log(
                    job,
                    "warn",
                    f"[zako] log limit of {job.max_log_bytes} bytes or "
                    f"{job.frame.max_log_lines} lines reached; {job.dropped} lines dropped",
                    time.time(),
                    batch,
                    marker=True,
                )
                self._driver.flush(job, batch)
            done = DoneEvent(
                task_id,
                0.0,
                0.0,
                heap,
                job.dropped,
                warm,
                value=outcome.value,
                reason=outcome.reason,
                error=outcome.error,
                uncacheable=job.uncacheable,
                compiled_hits=job.compiled[0],
                compiled_misses=job.compiled[1],
            )
        except MissingSources as exc:
            print(f"zako worker: task {task_id}: {exc}", file=sys.stderr)
            done = self._done_failed(
                task_id, FailureReason.INTERNAL, jserrors.make_error("InternalError", str(exc))
            )
            done.missing = exc.digests
        except Exception as exc:  # the exactly-one-done guarantee outlives our own bugs
            print(f"zako worker: internal error in task {task_id}: {exc!r}", file=sys.stderr)
            done = self._done_failed(
                task_id,
                FailureReason.INTERNAL,
                jserrors.make_error("InternalError", f"{type(exc).__name__}: {exc}"),
                job.dropped if job else 0,
            )
        done.cpu_s = time.process_time() - cpu0
        done.run_s = time.perf_counter() - wall0
        self._current = None
        self.send(done)
        if instance is not None:
            await self._isolates.give_back(
                instance, key, done.reason, done.heap or HeapFigures(), frame.reuse_max_tasks
            )
        if not self._stopping:
            try:
                self._isolates.prepare()
            except Exception as exc:
                print(f"zako worker: could not prepare a V8 instance: {exc!r}", file=sys.stderr)

    # ---- gc -----------------------------------------------------------------------------
    def _settle_now(self) -> None:
        self._settle_due = True
        self._wakeup.set()

    def _idle(self) -> None:
        self._idle_due = True
        self._wakeup.set()

    async def _idle_collect(self) -> None:
        """A warm isolate's heap grows with the garbage of thousands of tasks (V8 sees no
        pressure under a limit of a gigabyte or more): give it back once the worker idles."""
        self._ran_since_collect = False
        await self._isolates.collect()

    async def _collect_pending(self) -> None:
        """One collection and GcEvent per GcFrame received."""
        while self._gc_pending:
            self._gc_pending -= 1
            self._ran_since_collect = False
            process = psutil.Process()
            rss_before = process.memory_info().rss
            before, after = await self._isolates.collect()
            gc.collect()
            self.send(GcEvent(before, after, rss_before, process.memory_info().rss))


class _FrameReader(asyncio.Protocol):
    """Stdin's frames, handled in the read callback itself: no reader task, and no loop
    pass per frame between the pipe and `Worker._dispatch`. `ended` gets the exit
    status: 0 at an ExitFrame or a clean end of stream, 2 when the stream is corrupt."""

    def __init__(self, handle: Callable[[list[bytes]], bool], ended: asyncio.Future[int]) -> None:
        self._handle = handle
        self._ended = ended
        self._parser = codec.FrameParser()

    def data_received(self, data: bytes) -> None:
        if self._ended.done():
            return
        try:
            going = self._handle(self._parser.feed(data))
        except codec.ProtocolError as exc:  # a corrupt length or a body that is not JSON
            print(f"zako worker: {exc}", file=sys.stderr)
            self._ended.set_result(2)
            return
        if not going:
            self._ended.set_result(0)

    def eof_received(self) -> bool:
        self._finish()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()

    def _finish(self) -> None:
        if self._ended.done():
            return
        if self._parser.pending:
            print("zako worker: stream ended inside a frame", file=sys.stderr)
            self._ended.set_result(2)
        else:
            self._ended.set_result(0)


def main(brief_wait: float = BRIEF_WAIT_S) -> int:
    # Frames go to a private copy of stdout; fd 1 becomes stderr so that whatever V8 or a
    # library prints cannot corrupt the frame stream.
    frame_fd = os.dup(1)
    os.dup2(2, 1)
    runtime.init_v8()
    return asyncio.run(Worker(frame_fd, brief_wait).serve())
