"""The V8 worker process (`python -m zako_server.worker`), driven over pipes (protocol.py).

Why it is built this way:
- A task runs in a fresh MiniRacer, or, when the server allows it, in the warm one its
  tenant's previous task left, hardened and reset (isolates.py). A spare is made
  (prelude installed) right after a task's done event, off the request path.
- The common case is one eval per task (configure, compile, start, first report), and a
  warm isolate saves the ~4 ms an isolate costs: together a trivial task's worker CPU
  drops from about 5 ms to a fraction of one.
- JavaScript only ever runs inside an `eval_cancelable` this process started: module
  compilation, the entry call, each timer callback (timers are scheduled here, not by
  V8), and each poll. Cancelling that eval terminates V8, so timeouts and cancels are
  prompt and the event loop is never blocked by task code. mini-racer's own
  `wrap_py_function` and `await promise` are avoided on purpose: their callbacks make a
  *blocking* call into the isolate, which hangs this loop for as long as task code runs.
- Logs are buffered by the prelude and collected by each poll, so every log event of a
  task is sent before its done event; lines from a long synchronous loop arrive when it
  ends. A poll's lines go out coalesced (LogsEvent, up to LOG_BATCH_LINES or
  LOG_BATCH_BYTES a frame), and a task keeps at most max_log_lines lines and
  max_log_bytes bytes: a million one-character lines cost a handful of frames.
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
import contextlib
import dataclasses
import gc
import json
import os
import sys
import time
from collections import deque
from importlib import metadata
from typing import Any

import psutil
from py_mini_racer import JSEvalException, JSOOMException, JSParseException

from zako_server import protocol
from zako_server.protocol import (
    LOG_LEVELS,
    CancelFrame,
    ChildEvent,
    DoneEvent,
    ExitFrame,
    FailureReason,
    GcEvent,
    GcFrame,
    HeapFigures,
    JsError,
    LogLevel,
    LogsEvent,
    PingFrame,
    PongEvent,
    ReadyEvent,
    ReuseKey,
    RunFrame,
    StartedEvent,
)
from zako_server.worker import jserrors, runtime
from zako_server.worker.isolates import Isolates, heap_reading, retiring
from zako_server.worker.jserrors import Outcome, clean_text, failure
from zako_server.worker.runtime import Instance
from zako_server.worker.task import RunningTask

# After a timeout or cancel, how long the cancelled eval may take to unwind, and how long
# the last poll (collecting buffered logs) may take before the isolate is deemed stuck
# (by microtasks that run outside any eval; a terminated isolate answers in well under 1 ms).
STOP_GRACE_S = 2.0
DRAIN_TIMEOUT_S = 0.08
IDLE_COLLECT_S = 1.0
FROZEN_HINT = (
    " (built-ins are frozen in a warm isolate; this task had already logged, so it was not"
    " re-run fresh: set fresh_isolate to patch built-ins)"
)
DEADLOCK_MESSAGE = "the task's promise can never settle: nothing is pending that could settle it"
# A LogsEvent carries at most this many lines and (but for one longer line) bytes.
LOG_BATCH_LINES = protocol.LOG_BATCH_LINES
LOG_BATCH_BYTES = 1 << 20


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


class BadReport(Exception):
    """The prelude answered a poll with something that is not a poll report."""


class RetryFresh(Exception):
    """The task failed only because a hardened isolate's built-ins are frozen."""


class Worker:
    def __init__(self, frame_fd: int) -> None:
        self._fd = frame_fd
        self._isolates = Isolates()
        self._runs: deque[RunFrame] = deque()
        self._wakeup = asyncio.Event()
        self._current: RunningTask | None = None
        self._gc_pending = 0
        self._stopping = False
        self._version = _version("zako")
        self._heap_cap: int | None = None
        self._ran_since_collect = False

    # ---- frames -----------------------------------------------------------------------
    def send(self, event: ChildEvent) -> None:
        # A blocking write keeps frames whole and ordered; the parent always reads.
        view = memoryview(protocol.encode(event))
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
        self._heap_cap = int(v8_limit * 0.9) if v8_limit else None
        self.send(ReadyEvent(os.getpid(), spare.mr.v8_version, _version("mini-racer")))
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        runner = asyncio.create_task(self._run_loop())
        status = 0
        try:
            while True:
                body = await protocol.read_body(reader)
                if body is None:
                    break
                try:
                    frame = protocol.decode(body)
                except protocol.BadFrame as exc:
                    self._bad_frame(exc)
                    continue
                if isinstance(frame, ExitFrame):
                    break
                self._dispatch(frame)
        except protocol.ProtocolError as exc:
            print(f"zako worker: {exc}", file=sys.stderr)
            status = 2
        self._stopping = True
        if self._current is not None:
            self._current.stop("the worker is exiting")
        self._wakeup.set()
        await runner
        self._isolates.close()
        return status

    def _dispatch(self, frame: protocol.Frame) -> None:
        if isinstance(frame, RunFrame):
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
        elif isinstance(frame, PingFrame):
            self.send(PongEvent(frame.seq))
        elif isinstance(frame, GcFrame):
            # A run that has arrived but not yet started counts as busy: the parent
            # already sees this worker as running it, and expects gc after that task.
            if self._current is None and not self._runs:
                self._collect()
            else:
                self._gc_pending += 1
        else:
            print(f"zako worker: ignoring a {type(frame).__name__} frame", file=sys.stderr)

    def _bad_frame(self, exc: protocol.BadFrame) -> None:
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
                self._wakeup.clear()
                idle = None
                if self._ran_since_collect:
                    idle = asyncio.get_running_loop().call_later(IDLE_COLLECT_S, self._idle_collect)
                await self._wakeup.wait()
                if idle is not None:
                    idle.cancel()
            if self._stopping:
                for frame in self._runs:
                    self._not_run(frame.id, "the worker is exiting")
                self._runs.clear()
                return
            await self._run(self._runs.popleft())
            self._ran_since_collect = True
            for _ in range(self._gc_pending):
                self._collect()
            self._gc_pending = 0

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
            job = RunningTask.parse(frame)
            self._current = job
            key = job.key
            instance, warm = self._isolates.take(key)
            try:
                outcome = await self._supervise(instance, job)
            except RetryFresh:
                # Nothing of it was sent yet: run it again as if reuse were off.
                instance.close()
                instance, warm = self._isolates.take(None)
                key = job.key = None
                job.hardened = False
                left = max(job.timeout_s - (time.perf_counter() - wall0), 0.001)
                outcome = await self._supervise(instance, job, left)
            closing = key is None or retiring(
                instance, outcome.reason, frame.reuse_max_tasks, instance.uses + 1
            )
            heap = heap_reading(instance, time.perf_counter() - wall0, closing) or HeapFigures()
            heap.limit = job.max_heap_bytes
            if job.dropped:
                batch: list[list[Any]] = []
                self._log(
                    job,
                    "warn",
                    f"[zako] log limit of {job.max_log_bytes} bytes or "
                    f"{job.frame.max_log_lines} lines reached; {job.dropped} lines dropped",
                    time.time(),
                    batch,
                    marker=True,
                )
                self._flush(job, batch)
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
            )
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

    async def _supervise(
        self, instance: Instance, job: RunningTask, time_left: float | None = None
    ) -> Outcome:
        """Run the driver under the task's deadline (`time_left` of it, on a re-run) and
        its cancel switch."""
        driver = asyncio.create_task(self._drive(instance, job))
        either: set[asyncio.Future[Any]] = {driver, job.cancel}
        finished, _ = await asyncio.wait(
            either,
            timeout=job.timeout_s if time_left is None else time_left,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if driver in finished:
            return driver.result()
        driver.cancel()
        await asyncio.wait({driver}, timeout=STOP_GRACE_S)
        if driver.done() and not driver.cancelled():
            driver.exception()  # interrupted anyway; only mark it retrieved
        if job.cancel.done():
            outcome = failure(
                FailureReason.CANCELLED, jserrors.make_error("CancelledError", job.cancel_why)
            )
        else:
            outcome = failure(
                FailureReason.TIMEOUT,
                jserrors.make_error(
                    "TimeoutError", f"task exceeded its time limit of {job.timeout_s:g} s"
                ),
            )
        await self._drain(instance, job)
        return outcome

    async def _drain(self, instance: Instance, job: RunningTask) -> None:
        """Collect the logs of an interrupted task; a stuck isolate keeps its logs."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._poll(instance, job), DRAIN_TIMEOUT_S)

    async def _drive(self, instance: Instance, job: RunningTask) -> Outcome:
        try:
            return await self._execute(instance, job)
        except JSOOMException:
            outcome = self._out_of_memory(job)
        except JSEvalException as exc:
            if instance.mr.was_hard_memory_limit_reached():
                outcome = self._out_of_memory(job)
            else:
                outcome = failure(
                    FailureReason.JS_ERROR,
                    jserrors.uncaught_error(str(exc), instance.files, instance.prefix),
                )
        except BadReport as exc:
            outcome = failure(
                FailureReason.INTERNAL, jserrors.make_error("InternalError", str(exc))
            )
        await self._drain(instance, job)
        return outcome

    @staticmethod
    def _out_of_memory(job: RunningTask) -> Outcome:
        return failure(
            FailureReason.OUT_OF_MEMORY,
            jserrors.make_error(
                "OutOfMemoryError", f"task exceeded its heap limit of {job.max_heap_bytes} bytes"
            ),
        )

    def _configuration(self, job: RunningTask) -> dict[str, Any]:
        """The prelude's configure() argument for this task (the hermetic clock and PRNG
        settings only when the frame sets them: the prelude has its own defaults)."""
        context = job.frame.context
        config: dict[str, Any] = {
            "kind": context.kind,
            "hermetic": context.hermetic,
            "taskId": context.task_id,
            "labels": context.labels,
            "version": self._version,
            "maxLogBytes": job.max_log_bytes,
            "maxLogLines": job.frame.max_log_lines,
            "maxResultBytes": job.max_result_bytes,
            "reuse": job.hardened,
        }
        if context.epoch_ms is not None:
            config["epochMs"] = context.epoch_ms
        if context.seed is not None:
            config["seed"] = context.seed
        return config

    async def _execute(self, instance: Instance, job: RunningTask) -> Outcome:
        token = instance.token
        limit = job.max_heap_bytes
        instance.mr.set_hard_memory_limit(min(limit, self._heap_cap) if self._heap_cap else limit)
        job.hardened = job.key is not None
        frame = job.frame
        modules = list(frame.modules.items())
        for index, (name, _) in enumerate(modules):
            instance.files[runtime.script_name(name, index)] = name
        try:
            text = await instance.eval(
                runtime.task_script(
                    token,
                    self._configuration(job),
                    modules,
                    frame.entry,
                    frame.input,
                    frame.prepared,
                )
            )
        except JSEvalException as exc:
            if instance.mr.was_hard_memory_limit_reached():
                raise
            index = await instance.eval(runtime.failed_module_script(token))
            if not isinstance(index, int) or not 0 <= index < len(modules):
                raise
            instance.retired = True  # whatever the module's text declared: never reuse
            await self._drain(instance, job)
            name, source = modules[index]
            return failure(
                FailureReason.SYNTAX_ERROR,
                await self._syntax_error(instance, str(exc), name, source),
            )
        outcome, timers = self._report(text, job)
        if outcome is None:  # microtasks ran after that eval: ask again before judging
            outcome, timers = await self._poll(instance, job)
        while outcome is None:
            if not timers:
                return failure(
                    FailureReason.DEADLOCK, jserrors.make_error("DeadlockError", DEADLOCK_MESSAGE)
                )
            timer_id, due_ms = min(timers, key=lambda t: (t[1], t[0]))
            delay = due_ms / 1000 - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await instance.eval(runtime.fire_script(token, timer_id))
            outcome, timers = await self._poll(instance, job)
        return await self._locate_syntax_error(instance, outcome, job)

    @staticmethod
    async def _locate_syntax_error(
        instance: Instance, outcome: Outcome, job: RunningTask
    ) -> Outcome:
        """A module compiled on first require (after the entry) that did not parse: V8
        tells JavaScript no position, so parse its text once more as a plain script here,
        where mini-racer's message carries the line and column."""
        error = outcome.error
        frame = job.frame
        if (
            outcome.reason is not FailureReason.SYNTAX_ERROR
            or error is None
            or error.line is not None
            or error.module not in frame.modules
            or "map" in frame.prepared.get(error.module, {})  # sucrase's: its own position
            or "error" in frame.prepared.get(error.module, {})
        ):
            return outcome
        source = frame.modules[error.module]
        if source.startswith("#!"):
            source = "//" + source[2:]  # as the loader does: same length, no hashbang
        tainted = instance.tainted
        try:
            await instance.eval(runtime.diagnose_script(source))
        except JSParseException as exc:
            found = jserrors.syntax_error(
                str(exc), error.module, source, len(runtime.DIAGNOSE_PREFIX)
            )
            if found.line is not None and not jserrors.beyond_source(str(exc), source):
                error = dataclasses.replace(error, line=found.line, column=found.column)
        except JSEvalException:
            pass  # it parses as a script: the wrapper made the difference; no position
        instance.tainted = tainted
        return failure(FailureReason.SYNTAX_ERROR, error)

    @staticmethod
    async def _syntax_error(instance: Instance, text: str, name: str, source: str) -> JsError:
        error = jserrors.syntax_error(text, name, source, instance.prefix)
        if jserrors.beyond_source(text, source):
            # The diagnosis only parses (or throws before running anything): whatever it
            # does, the isolate is as idle as before, and its heap can still be read.
            tainted = instance.tainted
            try:
                await instance.eval(runtime.diagnose_script(source))
            except JSParseException as exc:
                found = jserrors.syntax_error(str(exc), name, source, len(runtime.DIAGNOSE_PREFIX))
                if not jserrors.beyond_source(str(exc), source) and (
                    "Illegal return" not in found.message
                ):
                    error = found
            except JSEvalException:
                pass  # it parsed as a script (and threw before running anything)
            instance.tainted = tainted
        return error

    async def _poll(
        self, instance: Instance, job: RunningTask
    ) -> tuple[Outcome | None, list[tuple[int, float]]]:
        return self._report(await instance.eval(runtime.poll_script(instance.token)), job)

    def _report(
        self, text: Any, job: RunningTask
    ) -> tuple[Outcome | None, list[tuple[int, float]]]:
        """Send a poll report's logs; return its outcome (None: pending) and timers."""
        try:
            report: Any = json.loads(text) if isinstance(text, str) else None
            logs, timers, dropped = report["logs"], report["timers"], report["dropped"]
            outcome = jserrors.check_outcome(report["outcome"], job.max_result_bytes)
            pending = [(int(i), float(due)) for i, due in timers]
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise BadReport(f"the prelude sent a malformed report: {exc}") from exc
        if outcome is not None and job.hardened and jserrors.frozen_builtin(outcome):
            if not job.logs_sent:
                raise RetryFresh()
            assert outcome.error is not None  # frozen_builtin checked it
            outcome.error.message += FROZEN_HINT
        batch: list[list[Any]] = []
        for level, message, ts in logs:
            self._log(job, level if level in LOG_LEVELS else "info", str(message), ts / 1000, batch)
        self._flush(job, batch)
        job.js_dropped = max(job.js_dropped, int(dropped))
        return outcome, pending

    def _log(
        self,
        job: RunningTask,
        level: LogLevel,
        message: str,
        ts: float,
        batch: list[list[Any]],
        *,
        marker: bool = False,
    ) -> None:
        """Add one line to `batch` (sent by `_flush`), or count it as dropped."""
        if not marker:
            if job.py_dropped or job.logs_sent >= job.frame.max_log_lines:
                job.py_dropped += 1
                return
            message = clean_text(message)
            size = len(message.encode())
            if job.log_bytes + size > job.max_log_bytes:
                job.py_dropped += 1
                return
            job.log_bytes += size
            job.batch_bytes += size
        else:
            message = clean_text(message)
        job.logs_sent += 1
        batch.append([level, message, ts])
        if len(batch) >= LOG_BATCH_LINES or job.batch_bytes >= LOG_BATCH_BYTES:
            self._flush(job, batch)

    def _flush(self, job: RunningTask, batch: list[list[Any]]) -> None:
        if batch:
            self.send(LogsEvent(job.id, batch[:]))
            batch.clear()
        job.batch_bytes = 0

    # ---- gc -----------------------------------------------------------------------------
    def _idle_collect(self) -> None:
        """A warm isolate's heap grows with the garbage of thousands of tasks (V8 sees no
        pressure under a limit of a gigabyte or more): give it back once the worker idles."""
        self._ran_since_collect = False
        self._isolates.collect()

    def _collect(self) -> None:
        self._ran_since_collect = False
        process = psutil.Process()
        rss_before = process.memory_info().rss
        before, after = self._isolates.collect()
        gc.collect()
        self.send(GcEvent(before, after, rss_before, process.memory_info().rss))


def main() -> int:
    # Frames go to a private copy of stdout; fd 1 becomes stderr so that whatever V8 or a
    # library prints cannot corrupt the frame stream.
    frame_fd = os.dup(1)
    os.dup2(2, 1)
    return asyncio.run(Worker(frame_fd).serve())
