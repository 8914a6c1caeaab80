"""Driving one task in one isolate: eval, polls, timers, drain, outcome and its logs.

Why it is a module of its own: the frame loop (process.py) decides *which* task runs in
*which* isolate and sends its started and done events; everything between those two
events, the JavaScript side of a task, happens here.

- JavaScript only ever runs inside a cancelable eval this driver started (evaluation.py):
  module compilation, the entry call, each timer callback (timers are scheduled here,
  not by V8), and each poll. Cancelling that eval terminates V8, so timeouts and cancels
  are prompt, and the event loop is never blocked by task code for more than the brief
  wait evaluation.py allows an eval before awaiting it. mini-racer's own
  `wrap_py_function` and `await promise` are avoided on purpose: their callbacks make a
  *blocking* call into the isolate, which hangs this loop for as long as task code runs.
- Logs are buffered by the prelude and collected by each poll, so every log event of a
  task is sent before its done event; lines from a long synchronous loop arrive when it
  ends. A poll's lines go out coalesced (LogsEvent, up to LOG_BATCH_LINES or
  LOG_BATCH_BYTES a frame), and a task keeps at most max_log_lines lines and
  max_log_bytes bytes: a million one-character lines cost a handful of frames.
- A task that fails only because a warm isolate's built-ins are frozen raises RetryFresh
  before anything of it was sent, so the frame loop can re-run it in a fresh isolate;
  one whose warm isolate refused the previous task's deferred reset raises ResetFailed
  before anything of it ran (isolates.py).
- A syntax error gets its line and column from a second, diagnosis-only parse when V8
  gave JavaScript none.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec
from py_mini_racer import JSEvalException, JSOOMException, JSParseException

from zako_server import protocol
from zako_server.protocol import (
    LOG_LEVELS,
    ChildEvent,
    FailureReason,
    JsError,
    LogLevel,
    LogsEvent,
)
from zako_server.worker import jserrors, runtime
from zako_server.worker.deadline import DeadlineTimer
from zako_server.worker.jserrors import Outcome, clean_text, failure
from zako_server.worker.runtime import Instance
from zako_server.worker.task import RunningTask

# What the last poll (collecting buffered logs) may take before the isolate is deemed
# stuck (by microtasks that run outside any eval; a terminated isolate answers in well
# under 1 ms).
DRAIN_TIMEOUT_S = 0.08
FROZEN_HINT = (
    " (built-ins are frozen in a warm isolate; this task had already logged, so it was not"
    " re-run fresh: set fresh_isolate to patch built-ins)"
)
DEADLOCK_MESSAGE = "the task's promise can never settle: nothing is pending that could settle it"
# A LogsEvent carries at most this many lines and (but for one longer line) bytes.
LOG_BATCH_LINES = protocol.LOG_BATCH_LINES
LOG_BATCH_BYTES = 1 << 20


def _wanted(
    files: list[tuple[str, str]], prepared: dict[str, Any], entries: dict[str, str]
) -> list[str]:
    """The digests whose texts the isolate needs: each file's, except a transformed
    file's own text (its code is compiled instead, named by `code_digest` or inline),
    and the transform answers kept by digest (`entries`)."""
    out = list(entries.values())
    for path, digest in files:
        info = prepared.get(path)
        if isinstance(info, dict):
            code = info.get("code_digest")
            if isinstance(code, str):
                out.append(code)
                continue
            if "code" in info:
                continue
        out.append(digest)
    return out


class BadReport(Exception):
    """The prelude answered a poll with something that is not a poll report."""


class RetryFresh(Exception):
    """The task failed only because a hardened isolate's built-ins are frozen."""


class ResetFailed(Exception):
    """A warm isolate could not drop its previous task's state (the reset that opens
    this task's eval refused): nothing of this task ran, so it can run elsewhere."""


class TaskDriver:
    """Runs a task's JavaScript in an isolate and reports what it logs and how it ended.

    It holds no task between calls: the frame loop hands it one task and one isolate at a
    time, and everything it sends goes through `send` (the worker's frame writer)."""

    def __init__(self, send: Callable[[ChildEvent], None], version: str) -> None:
        self._send = send
        self._version = version
        # Below V8's own heap limit (set once the first isolate is made): past that limit
        # an isolate aborts the whole process instead of terminating the task.
        self.heap_cap: int | None = None
        self._deadline = DeadlineTimer()  # the time limit of the task being driven

    async def supervise(
        self, instance: Instance, job: RunningTask, time_left: float | None = None
    ) -> Outcome:
        """Run the driver under the task's deadline (`time_left` of it, on a re-run) and
        its cancel switch. The deadline is on one timer for all tasks (deadline.py).

        The driver runs in the caller's own task, interrupted by a cancel of that task
        from a timer or from the switch: a task of its own and an `asyncio.wait` on it
        cost about a tenth of what a trivial task costs a worker (two loop passes and
        four futures and handles per task)."""
        me = asyncio.current_task()
        assert me is not None
        stopped: list[str] = []  # why this driver was interrupted (set at most once)
        driving = True

        def interrupt(why: str) -> None:
            # Only while suspended inside the driver: a switch that resolves as it
            # returns must not cancel whatever this task awaits next.
            if driving and not stopped:
                stopped.append(why)
                me.cancel()

        self._deadline.start(
            job.timeout_s if time_left is None else time_left, lambda: interrupt("timeout")
        )
        on_cancel: Callable[[asyncio.Future[None]], None] = lambda _: interrupt("cancel")  # noqa: E731
        if job.cancel.done():
            stopped.append("cancel")
        else:
            job.cancel.add_done_callback(on_cancel)
        try:
            if not stopped:
                return await self._drive(instance, job)
        except asyncio.CancelledError:
            if not stopped:
                raise  # not ours: the worker itself is being cancelled
            if sys.version_info >= (3, 11):
                me.uncancel()
        finally:
            driving = False
            self._deadline.stop()
            job.cancel.remove_done_callback(on_cancel)
        if stopped[0] == "cancel":
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
                    jserrors.uncaught_error(str(exc), instance.files(), instance.prefix),
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
        instance.mr.set_hard_memory_limit(min(limit, self.heap_cap) if self.heap_cap else limit)
        job.hardened = job.key is not None
        frame = job.frame
        files = list(job.digests.items())
        instance.task_files = files
        instance.task_tree = job.tree
        wanted = _wanted(files, job.prepared, job.entries)
        give, drop = job.store.feed(instance.held, wanted, job.inline, job.tree)
        # An answer the isolate keeps goes by its digest (modules.js parses it once).
        prepared = {
            path: {"entry_digest": job.entries[path]} if path in job.entries else info
            for path, info in job.prepared.items()
        }
        # The previous task's reset opens this eval (isolates.py): from here on the
        # isolate is either reset or, if this eval does not complete, closed.
        reset_first, instance.needs_reset = instance.needs_reset, False
        try:
            text = await instance.run(
                runtime.task_arguments(
                    token,
                    self._configuration(job),
                    files,
                    give,
                    drop,
                    frame.entry,
                    frame.input,
                    prepared,
                    frame.tree,
                    reset_first,
                )
            )
        except JSEvalException as exc:
            # Whether the isolate took the texts is unknown now: it runs nothing more.
            instance.retired = True
            if instance.mr.was_hard_memory_limit_reached():
                raise
            name = await instance.eval(runtime.failed_module_script(token))
            if not isinstance(name, str) or job.text(name) is None:
                raise
            await self._drain(instance, job)
            return failure(
                FailureReason.SYNTAX_ERROR,
                await self._syntax_error(instance, str(exc), name, job.text(name) or ""),
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
        module = error.module if error is not None else None
        source = job.text(module) if module is not None else None
        if (
            outcome.reason is not FailureReason.SYNTAX_ERROR
            or error is None
            or module is None
            or error.line is not None
            or source is None
            or "map" in (job.answer(module) or {})  # sucrase's: its own position
            or "error" in (job.answer(module) or {})
        ):
            return outcome
        if source.startswith("#!"):
            source = "//" + source[2:]  # as the loader does: same length, no hashbang
        tainted = instance.tainted
        try:
            await instance.eval(runtime.diagnose_script(source))
        except JSParseException as exc:
            found = jserrors.syntax_error(str(exc), module, source, len(runtime.DIAGNOSE_PREFIX))
            if found.line is not None and not jserrors.beyond_source(str(exc), source):
                error = msgspec.structs.replace(error, line=found.line, column=found.column)
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
        return self._report(await instance.eval(instance.poll_text, keep=True), job)

    def _report(
        self, text: Any, job: RunningTask
    ) -> tuple[Outcome | None, list[tuple[int, float]]]:
        """Send a poll report's logs; return its outcome (None: pending) and timers."""
        try:
            report: Any = json.loads(text) if isinstance(text, str) else None
            if "reset" in report:
                raise ResetFailed(str(report["reset"]))
            logs, timers, dropped = report["logs"], report["timers"], report["dropped"]
            outcome = jserrors.check_outcome(report["outcome"], job.max_result_bytes)
            pending = [(int(i), float(due)) for i, due in timers]
            hits, misses = report.get("compiled", (0, 0))
            job.compiled = (int(hits), int(misses))
            job.uncacheable = report.get("uncacheable") is True
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise BadReport(f"the prelude sent a malformed report: {exc}") from exc
        if outcome is not None and job.hardened and jserrors.frozen_builtin(outcome):
            if not job.logs_sent:
                raise RetryFresh()
            assert outcome.error is not None  # frozen_builtin checked it
            outcome.error.message += FROZEN_HINT
        batch: list[list[Any]] = []
        for level, message, ts in logs:
            self.log(job, level if level in LOG_LEVELS else "info", str(message), ts / 1000, batch)
        self.flush(job, batch)
        job.js_dropped = max(job.js_dropped, int(dropped))
        return outcome, pending

    def log(
        self,
        job: RunningTask,
        level: LogLevel,
        message: str,
        ts: float,
        batch: list[list[Any]],
        *,
        marker: bool = False,
    ) -> None:
        """Add one line to `batch` (sent by `flush`), or count it as dropped."""
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
            self.flush(job, batch)

    def flush(self, job: RunningTask, batch: list[list[Any]]) -> None:
        if batch:
            self._send(LogsEvent(job.id, batch[:]))
            batch.clear()
        job.batch_bytes = 0
