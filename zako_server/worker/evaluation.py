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

Two more savings ride on the same internals. A task goes in as a *call* of a function the
prelude made (`call`), which V8 does not compile, where an eval compiled the task's new
script text every time. And V8's thread keeps the Python thread state its answers are
handed back with (`_ThreadPin`), where ctypes made and destroyed one per answer. Driven
alone over its pipe, a worker went from 0.75 to 0.60 ms of CPU a trivial task with both.

This reaches into mini-racer's internals (the version is pinned to 0.14.x). `Evaluator`
checks for them when it is made; without them, or with a brief wait of 0 (the server's
`worker_brief_wait`), every eval goes through `eval_cancelable` and every call through
mini-racer's public `cancelable()` function call.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any

from py_mini_racer import JSFunction, MiniRacer

# How long the loop thread waits for an eval's answer before awaiting it instead.
BRIEF_WAIT_S = 0.002
# What `close` puts on the queue so a waiting thread ends when no answer ever comes.
_CLOSED = object()
# What `Evaluator._late` returns when no answer is queued.
_NOTHING = object()
# How long `Evaluator.unpin` waits for the answer of the eval that releases the pin (it
# comes in ~40 µs; none comes while leftover microtasks run, and closing ends those).
UNPIN_WAIT_S = 0.05
_gil_ensure = ctypes.pythonapi.PyGILState_Ensure
_gil_ensure.restype = ctypes.c_int
_gil_ensure.argtypes = []
_gil_release = ctypes.pythonapi.PyGILState_Release
_gil_release.restype = None
_gil_release.argtypes = [ctypes.c_int]


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
        self._no_arguments: Any = None  # an empty JS array's handle: `call`'s argument list
        self._pin = _ThreadPin()  # installed with the brief path (see _ThreadPin)
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
                and hasattr(type(ctx), "handle_callback_from_v8")
                and isinstance(ctx._non_cancelable_mr_task_results_queue, queue.Queue)
            ):
                raise AttributeError("mini-racer's context has changed")
        except (ImportError, AttributeError):
            return
        if not ctx._non_cancelable_mr_task_results_queue.empty():
            return  # an answer nobody took (never, in a new MiniRacer): leave it be
        self._ctx = ctx
        object.__setattr__(ctx, "handle_callback_from_v8", _pinning(ctx, self._pin))
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
        timeout = await self._after_cancelled(timeout)
        ctx = self._ctx
        code = self._kept.get(script) if keep else None
        if code is None:
            code = ctx._python_to_value_handle(script)
            if keep:
                self._kept[script] = code
        task_id = ctx._dll.mr_eval(ctx._ctx, code.raw, self._callback_id)
        return await self._answer(task_id, code, timeout)

    async def call(self, function: JSFunction, text: str, timeout: float | None = None) -> Any:
        """What `function` (made in this isolate) returns when called with `text` as its
        `this` (a primitive string in a strict function), as `eval` answers.

        Why not an eval: V8 compiles every eval's script first, and a task's script is
        new text each time (its id, its input). A call compiles nothing. Why `this`:
        mini-racer takes a call's arguments as a JS array, which would cost a round trip
        into V8 to fill; `this` goes as a plain value. Under callgrind, a trivial task's
        eval counted 443k instructions, the call 396k (in-process, 200 tasks)."""
        if self._queue is None:
            call = function.cancelable()(text)  # mini-racer's public path
            return await (call if timeout is None else asyncio.wait_for(call, timeout))
        timeout = await self._after_cancelled(timeout)
        ctx = self._ctx
        if self._no_arguments is None:
            self._no_arguments = ctx._python_to_value_handle(self._mr.eval("[]"))
        this = ctx._python_to_value_handle(text)
        task_id = ctx._dll.mr_call_function(
            ctx._ctx,
            ctx._python_to_value_handle(function).raw,
            this.raw,
            self._no_arguments.raw,
            self._callback_id,
        )
        return await self._answer(task_id, this, timeout)

    async def _after_cancelled(self, timeout: float | None) -> float | None:
        """Wait for a cancelled eval's answer, if one is still to come (so the next answer
        is the next eval's); the wait counts against `timeout`, which is returned less it."""
        if self._waiting is None or self._waiting.done():
            return timeout
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.wait_for(asyncio.shield(self._waiting), timeout)
        return None if timeout is None else max(timeout - (loop.time() - start), 0.0)

    async def _answer(self, task_id: int, keepalive: Any, timeout: float | None) -> Any:
        """The value V8 answers to the eval or call `task_id`: on the loop thread when it
        comes within the brief wait, else through the waiter thread (`keepalive`: the
        value handle the eval reads, referenced until V8 has answered)."""
        answers = self._queue
        assert answers is not None
        try:
            handle = answers.get(timeout=self._brief_wait_s)
        except queue.Empty:
            handle = self._late(answers)
            if handle is _NOTHING:
                left = None if timeout is None else max(timeout - self._brief_wait_s, 0.0)
                handle = await self._await(task_id, keepalive, left)
        if handle is _CLOSED:
            raise RuntimeError("the isolate was closed while an eval ran in it")
        return self._ctx._value_handle_to_python(handle)

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

    async def _await(self, task_id: int, keepalive: Any, timeout: float | None) -> Any:
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
        # `keepalive` rides along: referenced until V8 answered the eval reading it.
        self._requests.put((loop, answer, keepalive))
        try:
            if timeout is None:
                return await asyncio.shield(answer)
            return await asyncio.wait_for(asyncio.shield(answer), timeout)
        except (asyncio.CancelledError, asyncio.TimeoutError):
            self._ctx._dll.mr_cancel_task(self._ctx._ctx, task_id)
            raise

    def unpin(self, idle: bool) -> None:
        """Let V8's thread drop its Python thread state (`_ThreadPin`): call it before
        the MiniRacer is closed, with `idle` saying whether nothing runs in it. An idle
        isolate answers one more eval, whose callback releases the pin; a busy one
        releases it at the next callback that still comes (its terminated eval's)."""
        if self._queue is None or self._pin.state is None:
            return
        self._pin.release = True
        if not idle or (self._waiting is not None and not self._waiting.done()):
            return
        ctx = self._ctx
        code = self._kept.get("0") or ctx._python_to_value_handle("0")
        ctx._dll.mr_eval(ctx._ctx, code.raw, self._callback_id)
        with contextlib.suppress(queue.Empty):
            ctx._value_handle_to_python(self._queue.get(timeout=UNPIN_WAIT_S))

    def close(self) -> None:
        """End the waiter thread, waking it if it still waits for an answer that may now
        never come (call it after the MiniRacer is closed)."""
        self._kept.clear()
        self._no_arguments = None
        if self._queue is None or self._waiter is None:
            return
        if self._waiting is not None and not self._waiting.done():
            self._queue.put(_CLOSED)
        self._requests.put(None)


class _ThreadPin:
    """Keeps a Python thread state alive on V8's thread between its callbacks.

    Why: every answer comes back through a ctypes callback on the isolate's own thread,
    which Python does not know. ctypes gives that thread a new thread state for each
    call and deletes it after: allocation, the interpreter's thread list, and a data
    stack that is mapped and unmapped each time (a TLB shootdown across the process's
    CPUs, then page faults). An eval of `0` cost 80-98 µs of CPU that way, 30-46 µs
    with the state kept (in-process, 40,000 evals). One more PyGILState_Ensure on that
    thread, never paired while the isolate lives, keeps the count above zero, so
    ctypes' own release only gives up the GIL. `Evaluator.unpin` pairs it before the
    isolate closes; a state left behind would be ~17 KB (the thread is gone)."""

    __slots__ = ("release", "state")

    def __init__(self) -> None:
        self.state: int | None = None  # PyGILState_Ensure's answer, while pinned
        self.release = False

    def after_callback(self) -> None:
        """Run on V8's thread at the end of each callback, the GIL held."""
        if self.release:
            if self.state is not None:
                _gil_release(self.state)
                self.state = None
        elif self.state is None:
            self.state = _gil_ensure()


def _pinning(ctx: Any, pin: _ThreadPin) -> Callable[[int, Any], None]:
    """mini-racer's callback handler for `ctx`, then the pin. The context is held
    weakly: the handler is stored on it, and a strong reference would be a cycle."""
    context = weakref.ref(ctx)
    handle = type(ctx).handle_callback_from_v8

    def from_v8(callback_id: int, raw: Any) -> None:
        live = context()
        if live is not None:
            handle(live, callback_id, raw)
        pin.after_callback()

    return from_v8


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
