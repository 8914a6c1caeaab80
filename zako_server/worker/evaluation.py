"""Evals that answer on the worker's loop thread when they are brief.

Why: mini-racer's `eval_cancelable` hands every result back through
`loop.call_soon_threadsafe` from V8's thread: a write to the loop's self-pipe, a wake-up
out of epoll and a loop pass before the awaiting task resumes. A trivial task's eval runs
for a tenth of a millisecond, so that hand-back is most of what the eval costs the worker
(a blocking eval of `0` counts 99k instructions under callgrind, the cancelable one 151k),
and it sits on the critical path of every sequential call.

So an eval here starts as mini-racer's blocking eval does (its answer goes to the
context's own queue, no loop involved) and the loop thread waits on that queue for at most
BRIEF_WAIT_S. Most evals answer in that time. One that does not goes on as an awaitable: a
thread (one per isolate, made at its first long eval) waits on the queue and the loop
awaits it, so pings, cancels and frames are served while task code runs, as before. The
loop is blocked at most BRIEF_WAIT_S per eval, well inside every deadline the worker keeps
(a pong is due within seconds). A long eval pays for the brief wait and the hand-over:
an eval of 4 ms cost 4.20 to 4.22 ms of process CPU against 4.13 to 4.15 through
`eval_cancelable`.

A cancel terminates the eval in V8 (`mr_cancel_task`, as `eval_cancelable` does). Its
answer still arrives, in order, since V8 runs one context's tasks one after another: the
next eval first waits for it, so every answer goes to the eval that asked.

Measured under callgrind, a worker driven alone over its pipe with trivial tasks: 1,457k
instructions a task before, 1,347k after with one task in flight; 1,385k and 1,262k with
two. In-process, an eval of `1+1` went from 200 to 135 µs of wall time.

This reaches into mini-racer's internals (the version is pinned to 0.14.x). `Evaluator`
checks for them when it is made; without them, or with a brief wait of 0 (the server's
`worker_brief_wait`), every eval goes through `eval_cancelable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from typing import Any

from py_mini_racer import MiniRacer

# How long the loop thread waits for an eval's answer before awaiting it instead.
BRIEF_WAIT_S = 0.002
# What `close` puts on the queue so a waiting thread ends when no answer ever comes.
_CLOSED = object()
# What `Evaluator._late` returns when no answer is queued.
_NOTHING = object()


class Evaluator:
    """Runs one MiniRacer's evals, one at a time (create it inside the running loop)."""

    def __init__(self, mr: MiniRacer, brief_wait_s: float = BRIEF_WAIT_S) -> None:
        self._mr = mr
        self._brief_wait_s = brief_wait_s
        self._ctx: Any = None
        self._queue: queue.SimpleQueue[Any] | None = None
        # The latest thread-backed wait. Undone after its eval returned, it is a cancelled
        # eval's: that answer is the next on the queue, so the next eval waits for it first.
        self._waiting: asyncio.Future[Any] | None = None
        self._waiter: threading.Thread | None = None
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._kept: dict[str, Any] = {}  # script -> its value handle (eval's `keep`)
        if brief_wait_s <= 0:
            return  # every eval through eval_cancelable (the server's worker_brief_wait 0)
        try:
            from py_mini_racer import _context

            ctx: Any = mr._ctx
            self._callback_id = _context._UNCANCELABLE_TASK_CALLBACK_ID
            if not (
                hasattr(ctx, "_dll")
                and hasattr(ctx, "_python_to_value_handle")
                and hasattr(ctx, "_value_handle_to_python")
                and hasattr(ctx, "_wrap_raw_handle")
                and isinstance(ctx._non_cancelable_mr_task_results_queue, queue.Queue)
            ):
                raise AttributeError("mini-racer's context has changed")
        except (ImportError, AttributeError):
            return
        if not ctx._non_cancelable_mr_task_results_queue.empty():
            return  # an answer nobody took (never, in a new MiniRacer): leave it be
        self._ctx = ctx
        # mini-racer's queue.Queue takes each answer through Python-level locking twice,
        # on V8's thread (its callback's put) and on this one (the get): a SimpleQueue,
        # C throughout, serves the two calls mini-racer makes on it (put, blocking get)
        # as well. Swapped while nothing waits on it, before the first eval here. Under
        # callgrind a trivial task went from 1,183k to 1,162k instructions.
        self._queue = queue.SimpleQueue()
        object.__setattr__(ctx, "_non_cancelable_mr_task_results_queue", self._queue)

    @property
    def brief(self) -> bool:
        """Whether evals take the loop-thread path (mini-racer's internals are there)."""
        return self._queue is not None

    async def eval(self, script: str, timeout: float | None = None, keep: bool = False) -> Any:
        """The eval's value; with `timeout`, asyncio.TimeoutError once it has run that
        long (the eval is then cancelled in V8, as by a cancel of the caller).

        The timeout is armed only if the eval outlasts the brief wait: an `asyncio.wait_for`
        around every bounded eval (the probe before a heap reading, a settling reset) made
        a task, a timer and loop passes for an eval that had answered on the spot. Under
        callgrind, where every trivial task takes a reading of its own (it runs ~50 times
        slower), a task went from 1,255k to 1,183k instructions.

        `keep`: the script is one this isolate runs again and again (a probe, a poll, a
        reset): its text goes into V8 once, and the handle serves every later eval of it.
        Making and freeing a handle are two ctypes calls: under callgrind, where every
        trivial task probes before its heap reading, a task went from 1,162k to 1,128k."""
        if self._queue is None:
            if timeout is None:
                return await self._mr.eval_cancelable(script)
            return await asyncio.wait_for(self._mr.eval_cancelable(script), timeout)
        if self._waiting is not None and not self._waiting.done():
            # A cancelled eval's answer, still to come: its wait counts against `timeout`.
            loop = asyncio.get_running_loop()
            start = loop.time()
            await asyncio.wait_for(asyncio.shield(self._waiting), timeout)
            if timeout is not None:
                timeout = max(timeout - (loop.time() - start), 0.0)
        ctx, answers = self._ctx, self._queue
        code = self._kept.get(script) if keep else None
        if code is None:
            code = ctx._python_to_value_handle(script)
            if keep:
                self._kept[script] = code
        task_id = ctx._dll.mr_eval(ctx._ctx, code.raw, self._callback_id)
        try:
            handle = answers.get(timeout=self._brief_wait_s)
        except queue.Empty:
            handle = self._late(answers)
            if handle is _NOTHING:
                left = None if timeout is None else max(timeout - self._brief_wait_s, 0.0)
                handle = await self._await(task_id, code, left)
        if handle is _CLOSED:
            raise RuntimeError("the isolate was closed while an eval ran in it")
        return ctx._value_handle_to_python(handle)

    @staticmethod
    def _late(answers: queue.SimpleQueue[Any]) -> Any:
        """An answer that came as the brief wait ran out, else _NOTHING. A SimpleQueue's
        timed get gives up at its deadline without looking at the queue again (a
        queue.Queue looks). Under callgrind, whose threads take turns, about half the
        evals went to the thread-backed wait with their answer already queued (102 in
        200, against 2 with this look); a trivial task counted 1,108-1,110k instructions
        before, 1,100-1,105k after (two runs each)."""
        try:
            return answers.get_nowait()
        except queue.Empty:
            return _NOTHING

    async def _await(self, task_id: int, code: Any, timeout: float | None) -> Any:
        """The rest of a long eval: the waiter thread waits on the queue, the loop stays
        free (for at most `timeout` more, if given)."""
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        if self._waiter is None:
            # One thread per isolate, made at its first long eval and kept: starting a
            # thread per long eval cost ~0.2 ms of CPU each (an eval of 4 ms: 4.31 ms of
            # process CPU against 4.11 through eval_cancelable).
            self._waiter = threading.Thread(
                target=_wait, args=(self._requests, self._queue), name="zako-eval-wait", daemon=True
            )
            self._waiter.start()
        self._waiting = answer
        # `code` rides along: it stays referenced until V8 answered the eval reading it.
        self._requests.put((loop, answer, code))
        try:
            if timeout is None:
                return await asyncio.shield(answer)
            return await asyncio.wait_for(asyncio.shield(answer), timeout)
        except (asyncio.CancelledError, asyncio.TimeoutError):
            self._ctx._dll.mr_cancel_task(self._ctx._ctx, task_id)
            raise

    def close(self) -> None:
        """End the waiter thread, waking it if it still waits for an answer that may now
        never come (call it after the MiniRacer is closed)."""
        self._kept.clear()
        if self._queue is None or self._waiter is None:
            return
        if self._waiting is not None and not self._waiting.done():
            self._queue.put(_CLOSED)
        self._requests.put(None)


def _wait(requests: queue.SimpleQueue[Any], answers: queue.SimpleQueue[Any]) -> None:
    """The waiter thread: for each long eval, in order, its answer to its loop."""
    while True:
        request = requests.get()
        if request is None:
            return
        loop, answer, code = request
        item = answers.get()
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
            loop.call_soon_threadsafe(_settle, answer, item, code)
        del request, loop, answer, code, item


def _settle(answer: asyncio.Future[Any], item: Any, _code: Any) -> None:
    if not answer.done():
        answer.set_result(item)
