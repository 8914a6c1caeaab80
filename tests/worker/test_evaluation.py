"""Evals that answer on the loop thread when brief, and as an awaitable otherwise
(worker/evaluation.py): every answer goes to the eval that asked, a long eval leaves the
loop free, a cancel terminates it, and a close wakes whatever still waits."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from py_mini_racer import JSEvalException, MiniRacer

from zako_server.worker import evaluation
from zako_server.worker.evaluation import Evaluator

# A busy loop of `ms` milliseconds in V8, past BRIEF_WAIT_S when `ms` is 5 or more.
SPIN = (
    "(() => {{ const end = Date.now() + {ms}; while (Date.now() < end) {{}} return {value}; }})()"
)


@pytest.fixture
async def racer() -> AsyncIterator[MiniRacer]:
    mr = MiniRacer()  # made inside the running loop, as the worker makes its isolates
    try:
        yield mr
    finally:
        mr.close()


@pytest.fixture
async def ev(racer: MiniRacer) -> AsyncIterator[Evaluator]:
    evaluator = Evaluator(racer)
    try:
        yield evaluator
    finally:
        _close(racer, evaluator)


def _close(mr: MiniRacer, evaluator: Evaluator, idle: bool = True) -> None:
    """Close an isolate as Instance.close does: unpin, then the racer, then the evaluator."""
    evaluator.unpin(idle=idle)
    mr.close()
    evaluator.close()


def _waiters() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "zako-eval-wait" and t.is_alive()}


async def _ended_soon(threads: set[threading.Thread]) -> bool:
    """Whether these waiter threads have all ended within a second (one ends once it has
    handed its last answer to the loop, so the loop can resume first)."""
    for _ in range(50):
        if not any(t.is_alive() for t in threads):
            return True
        await asyncio.sleep(0.02)
    return not any(t.is_alive() for t in threads)


async def test_the_pinned_mini_racer_has_what_the_brief_path_reads(ev: Evaluator) -> None:
    # Fails when a mini-racer upgrade moves the internals: the worker would then take the
    # slower eval_cancelable path for every eval, silently.
    assert ev.brief


async def test_brief_evals_answer_in_order_with_values_and_errors(ev: Evaluator) -> None:
    assert await ev.eval("1 + 1") == 2
    assert await ev.eval("var kept = 'x'.repeat(3); kept") == "xxx"
    assert await ev.eval("kept.length") == 3
    with pytest.raises(JSEvalException, match="boom"):
        await ev.eval("throw new Error('boom')")
    assert await ev.eval("'after'") == "after"


async def test_a_long_eval_leaves_the_loop_free(ev: Evaluator) -> None:
    ticks: list[float] = []

    async def tick() -> None:
        for _ in range(10):
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    started = time.monotonic()
    assert await ev.eval(SPIN.format(ms=200, value=7)) == 7
    ended = time.monotonic()
    await ticker
    during = [t for t in ticks if started < t < ended]
    # The loop ran the ticker throughout, not only once the eval was over.
    assert len(during) >= 5, (during, started, ended)


async def test_long_evals_share_one_waiter_thread_that_ends_at_close() -> None:
    before = _waiters()
    mr = MiniRacer()
    ev = Evaluator(mr)
    seen: set[threading.Thread] = set()
    for i in range(5):
        spin = asyncio.ensure_future(ev.eval(SPIN.format(ms=30, value=i)))
        await asyncio.sleep(0.015)  # past the brief wait: the waiter has the eval now
        seen |= _waiters() - before
        assert await spin == i
    assert len(seen) == 1  # one thread for all five, not one each
    mr.close()
    ev.close()
    assert await _ended_soon(seen)


async def test_a_cancelled_eval_is_terminated_and_its_answer_goes_to_no_other_eval(
    ev: Evaluator,
) -> None:
    for round_ in range(3):
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ev.eval("while (true) {}"), 0.05)
        # Each eval gets its own answer: the terminated one's never reaches the next.
        assert await ev.eval(f"{round_} * 10") == round_ * 10
        assert time.monotonic() - started < 5
        assert await ev.eval(SPIN.format(ms=20, value=round_)) == round_


async def test_the_next_eval_waits_for_a_cancelled_evals_answer_even_when_it_lingers(
    ev: Evaluator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A waiter slow to take its request leaves the terminated eval's answer on the queue
    # when the next eval starts: that eval must not take it as its own.
    real = evaluation._wait

    class Late:
        def __init__(self, requests: Any) -> None:
            self._requests = requests

        def get(self) -> Any:
            request = self._requests.get()
            time.sleep(0.1)
            return request

    def late_wait(requests: Any, answers: Any) -> None:
        real(Late(requests), answers)

    monkeypatch.setattr(evaluation, "_wait", late_wait)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(ev.eval(SPIN.format(ms=1000, value=-1)), 0.02)
    await asyncio.sleep(0.02)  # V8 has answered the terminated eval; the waiter still sleeps
    assert await ev.eval("7") == 7


async def test_answers_stay_paired_across_brief_long_and_cancelled_evals(
    ev: Evaluator,
) -> None:
    for i in range(30):
        kind = i % 3
        if kind == 0:
            assert await ev.eval(f"{i}") == i
        elif kind == 1:
            assert await ev.eval(SPIN.format(ms=5, value=i)) == i
        else:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ev.eval(SPIN.format(ms=1000, value=-1)), 0.01)


async def test_close_wakes_a_thread_whose_answer_never_comes() -> None:
    before = _waiters()
    mr = MiniRacer()
    ev = Evaluator(mr)
    # Microtasks that never end run after the eval returns, outside anything a cancel
    # reaches: the next eval is never started, so its answer never comes.
    await ev.eval("(function spin() { Promise.resolve().then(spin); })(); 0")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(ev.eval("1"), 0.05)
    waiting = _waiters() - before
    assert waiting
    closed = threading.Thread(target=mr.close, daemon=True)
    closed.start()
    closed.join(10)
    ev.close()
    assert await _ended_soon(waiting)


class _Plain:
    """A MiniRacer stand-in without mini-racer's internals."""

    def __init__(self) -> None:
        self.scripts: list[str] = []

    async def eval_cancelable(self, script: str) -> Any:
        self.scripts.append(script)
        return len(script)


async def test_without_the_internals_every_eval_goes_through_eval_cancelable() -> None:
    plain = _Plain()
    evaluator = Evaluator(plain)  # type: ignore[arg-type]
    assert not evaluator.brief
    assert await evaluator.eval("abc") == 3
    assert plain.scripts == ["abc"]
    evaluator.close()


async def test_a_brief_wait_of_0_sends_every_eval_through_eval_cancelable(racer: MiniRacer) -> None:
    evaluator = Evaluator(racer, 0)  # the server's worker_brief_wait 0
    assert not evaluator.brief
    assert await evaluator.eval("6 * 7") == 42
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(evaluator.eval("while (true) {}"), 0.05)
    assert await evaluator.eval("'after'") == "after"
    evaluator.close()


async def test_a_bounded_eval_times_out_and_the_next_eval_gets_its_own_answer(
    ev: Evaluator,
) -> None:
    # The bound is armed only past the brief wait (isolates._bounded_eval's probes and
    # resets): a brief eval answers as any other, a long one is cancelled in V8 at it.
    assert await ev.eval("2 + 2", 0.25) == 4
    started = time.perf_counter()
    with pytest.raises(asyncio.TimeoutError):
        await ev.eval(SPIN.format(ms=5000, value=1), 0.05)
    assert time.perf_counter() - started < 1.0
    assert await ev.eval("'after'", 0.25) == "after"


async def test_a_bounded_eval_through_eval_cancelable_times_out(racer: MiniRacer) -> None:
    evaluator = Evaluator(racer, 0)
    with pytest.raises(asyncio.TimeoutError):
        await evaluator.eval("while (true) {}", 0.05)
    assert await evaluator.eval("'after'", 0.25) == "after"
    evaluator.close()


async def test_a_kept_script_goes_into_v8_once_and_answers_every_time(ev: Evaluator) -> None:
    await ev.eval("var n = 0")
    for expected in (1, 2, 3):
        assert await ev.eval("++n", keep=True) == expected
    assert list(ev._kept) == ["++n"]  # one handle, made at the first eval
    assert await ev.eval("++n") == 4  # the same text unkept: a handle of its own
    assert list(ev._kept) == ["++n"]


# ---- calls (Evaluator.call) ----------------------------------------------------------

# A strict function reading its text from `this` (Evaluator.call's brief path) or from its
# first argument (mini-racer's public path), as the prelude's task function does.
ECHO_FUNCTION = (
    "(function (text) { 'use strict';"
    " const t = typeof text === 'string' ? text : this;"
    " if (t === 'spin') { while (true) {} }"
    " return typeof this + ':' + t.length + ':' + JSON.parse(t).n * 2; })"
)


@pytest.mark.parametrize("brief_wait", [evaluation.BRIEF_WAIT_S, 0.0])
async def test_a_call_gets_its_text_and_answers_in_turn_with_evals(
    racer: MiniRacer, brief_wait: float
) -> None:
    evaluator = Evaluator(racer, brief_wait)
    function = await evaluator.eval(ECHO_FUNCTION)
    brief = evaluator.brief
    for n in range(3):
        text = json.dumps({"n": n, "pad": "é" * n})
        got = await evaluator.call(function, text)
        # The brief path passes the text as `this` (a primitive string in strict code),
        # the public one as the argument.
        assert got == f"{'string' if brief else 'undefined'}:{len(text)}:{n * 2}"
        assert await evaluator.eval(f"{n} + 1") == n + 1
    evaluator.close()


async def test_a_long_call_is_cancelled_at_its_timeout_and_the_next_eval_gets_its_own_answer(
    ev: Evaluator,
) -> None:
    function = await ev.eval(ECHO_FUNCTION)
    started = time.perf_counter()
    with pytest.raises(asyncio.TimeoutError):
        await ev.call(function, "spin", 0.05)
    assert time.perf_counter() - started < 1.0
    assert await ev.eval("'after'") == "after"
    assert await ev.call(function, '{"n": 21}') == "string:9:42"


# ---- V8's thread keeps its Python thread state (_ThreadPin) ---------------------------


async def _settled_thread_states() -> int:
    """`_thread_states` once earlier tests' waiter threads have ended (each has one)."""
    assert await _ended_soon(_waiters())
    return _thread_states()


async def _thread_states_back_to(count: int) -> bool:
    """Whether the interpreter holds `count` thread states within a second (a waiter
    thread ends, and a terminated eval's answer comes, a moment after a close)."""
    for _ in range(50):
        if _thread_states() == count:
            return True
        await asyncio.sleep(0.02)
    return _thread_states() == count


def _thread_states() -> int:
    """How many Python thread states the interpreter holds (C API, the GIL held)."""
    api = ctypes.pythonapi
    api.PyInterpreterState_Get.restype = ctypes.c_void_p
    api.PyInterpreterState_ThreadHead.restype = ctypes.c_void_p
    api.PyInterpreterState_ThreadHead.argtypes = [ctypes.c_void_p]
    api.PyThreadState_Next.restype = ctypes.c_void_p
    api.PyThreadState_Next.argtypes = [ctypes.c_void_p]
    count, state = 0, api.PyInterpreterState_ThreadHead(api.PyInterpreterState_Get())
    while state:
        count += 1
        state = api.PyThreadState_Next(state)
    return count


async def test_v8s_thread_keeps_one_thread_state_while_the_isolate_lives() -> None:
    before = await _settled_thread_states()
    racers = [MiniRacer() for _ in range(3)]
    evaluators = [Evaluator(mr) for mr in racers]
    for evaluator in evaluators:
        for n in range(5):
            assert await evaluator.eval(f"{n} * 2") == n * 2
    # One each, kept between answers: without the pin ctypes deletes it after each one.
    assert _thread_states() == before + 3
    for mr, evaluator in zip(racers, evaluators, strict=True):
        _close(mr, evaluator)
    assert _thread_states() == before


async def test_isolates_opened_and_closed_leave_no_thread_state_behind() -> None:
    before = await _settled_thread_states()
    for _ in range(30):
        mr = MiniRacer()
        evaluator = Evaluator(mr)
        assert await evaluator.eval("1") == 1
        _close(mr, evaluator)
    assert _thread_states() == before


async def test_an_isolate_closed_while_busy_releases_its_thread_state_too() -> None:
    before = await _settled_thread_states()
    for _ in range(3):
        mr = MiniRacer()
        evaluator = Evaluator(mr)
        assert await evaluator.eval("1") == 1
        running = asyncio.ensure_future(evaluator.eval("while (true) {}"))
        await asyncio.sleep(0.05)  # past the brief wait: the waiter thread has it
        _close(mr, evaluator, idle=False)  # the terminated eval's answer releases it
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running, 5)
    assert await _thread_states_back_to(before)


async def test_an_isolate_stuck_in_leftover_microtasks_unpins_within_its_bound() -> None:
    # An idle-looking isolate (its last eval returned) can still run a microtask chain
    # that never ends: the eval that releases the pin then gets no answer, and the wait
    # for it is bounded; closing terminates the chain, and its answer releases the pin.
    before = await _settled_thread_states()
    mr = MiniRacer()
    evaluator = Evaluator(mr)
    await evaluator.eval("(function spin() { Promise.resolve().then(spin); })(); 0")
    started = time.perf_counter()
    evaluator.unpin(idle=True)
    assert time.perf_counter() - started < evaluation.UNPIN_WAIT_S + 0.5
    closed = threading.Thread(target=mr.close, daemon=True)
    closed.start()
    closed.join(10)
    evaluator.close()
    assert await _thread_states_back_to(before)
