"""Prefetch: a task queued behind a busy worker's (pool.py, slots.Slot), through a
real server's pool and real worker processes. Each test drives `Pool.run` on the server's
own loop, so which worker a task meets, and when, does not depend on the machine's speed."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from google.protobuf.duration_pb2 import Duration

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_server.protocol import FailureReason, StartedEvent
from zako_server.server.errors import QueueDeadlineExceeded
from zako_server.server.validation import validate

SPIN = "while (true) {}"


def frame_of(server: Any, task_id: str, source: str, timeout_s: float = 30.0) -> Any:
    timeout = Duration(seconds=int(timeout_s), nanos=int(timeout_s % 1 * 1e9))
    task = pb.Task(id=task_id, source=source, timeout=timeout)
    return validate(task, server.settings).frame


class Seen:
    """Which worker said it began which task, and when."""

    def __init__(self) -> None:
        self.began: dict[str, tuple[str, float]] = {}
        self._events: dict[str, asyncio.Event] = {}

    def event(self, task_id: str) -> asyncio.Event:
        """Set once a worker began `task_id` (make it on the server's loop)."""
        return self._events.setdefault(task_id, asyncio.Event())

    def sink(self, task_id: str) -> Any:
        def on_event(event: Any, worker: Any) -> None:
            if isinstance(event, StartedEvent):
                self.began[task_id] = (worker.id, time.monotonic())
                if task_id in self._events:
                    self._events[task_id].set()

        return on_event


def spin_then_two(server: Any) -> tuple[Any, Any]:
    """Frames "first" (spins until its 0.5 s timeout) and "second" (answers 2)."""
    return (
        frame_of(server, "first", SPIN, timeout_s=0.5),
        frame_of(server, "second", "module.exports = 2"),
    )


async def one_behind_another(pool: Any, seen: Seen, ahead: Any, behind: Any) -> tuple[Any, Any]:
    """Send `ahead`, then `behind` one loop pass later, while `ahead` is on its worker's
    pipe and has not begun (so prefetch may queue `behind` there): their runs."""
    a = asyncio.ensure_future(pool.run(ahead, seen.sink(ahead.id)))
    await asyncio.sleep(0)
    b = asyncio.ensure_future(pool.run(behind, seen.sink(behind.id)))
    return a, b


def test_a_task_sent_behind_a_busy_worker_runs_right_after_it(server_factory):
    server = server_factory(min_workers=1, max_workers=1)
    pool, seen = server.server.pool, Seen()
    first, second = spin_then_two(server)

    async def scenario():
        a, b = await one_behind_another(pool, seen, first, second)
        await asyncio.sleep(0.2)
        held = [slot.frame.id for slot in pool.workers()[0].slots]
        return held, await a, await b

    held, a, b = server.call(scenario())
    assert held == ["first", "second"]  # the second was in the worker before the first ended
    assert a.reason is FailureReason.TIMEOUT and b.ok and b.value == "2"
    assert seen.began["first"][1] < seen.began["second"][1]


def test_prefetch_off_keeps_the_next_task_in_the_pool(server_factory):
    server = server_factory(min_workers=1, max_workers=1, worker_prefetch=0)
    pool = server.server.pool
    first, second = spin_then_two(server)

    async def scenario():
        a, b = await one_behind_another(pool, Seen(), first, second)
        await asyncio.sleep(0.2)
        held = [slot.frame.id for slot in pool.workers()[0].slots]
        return held, await a, await b

    held, _, b = server.call(scenario())
    assert held == ["first"] and b.ok


def hog_then_impatient(server: Any, meanwhile: Callable[[Seen], Awaitable[None]]) -> Any:
    """Run "hog" (spins to its 1 s timeout) on the only worker; after `meanwhile`, run
    "impatient" with a deadline 0.2 s on, which must fail QueueDeadlineExceeded without
    running: how long it waited, which tasks began, and the hog's own end."""
    pool, seen = server.server.pool, Seen()
    hog = frame_of(server, "hog", SPIN, timeout_s=1.0)
    impatient = frame_of(server, "impatient", "module.exports = 1")

    async def scenario():
        a = asyncio.ensure_future(pool.run(hog, seen.sink("hog")))
        await meanwhile(seen)
        t0 = time.monotonic()
        with pytest.raises(QueueDeadlineExceeded, match="did not run"):
            await pool.run(impatient, seen.sink("impatient"), t0 + 0.2)
        waited = time.monotonic() - t0
        return waited, await a

    waited, hog_done = server.call(scenario())
    return waited, seen.began, hog_done


def test_a_queued_task_past_its_deadline_is_withdrawn_without_running(server_factory):
    server = server_factory(min_workers=1, max_workers=1)

    async def one_pass(_: Seen) -> None:  # the hog is on the pipe, not begun: queue behind
        await asyncio.sleep(0)

    waited, began, hog_done = hog_then_impatient(server, one_pass)
    assert 0.15 < waited < 0.9  # at its deadline, not when the hog ended
    assert "impatient" not in began
    assert hog_done.reason is FailureReason.TIMEOUT  # the running task was left alone


def test_a_task_waiting_in_the_pool_for_a_worker_fails_at_its_deadline(server_factory):
    # Admission may grant a lease for a place behind a busy worker that is gone by the
    # time the task reaches the pool (that worker's task began over _PREFETCH_RECENT_S
    # ago): the task then waits in the pool, and its deadline must still hold there.
    server = server_factory(min_workers=1, max_workers=1)

    async def long_after_it_began(seen: Seen) -> None:
        await seen.event("hog").wait()
        await asyncio.sleep(0.05)  # too long ago to queue behind

    waited, began, hog_done = hog_then_impatient(server, long_after_it_began)
    assert 0.15 < waited < 0.8  # at its deadline, not when the hog ended
    assert "impatient" not in began
    assert hog_done.reason is FailureReason.TIMEOUT


def test_a_task_queued_behind_a_long_one_moves_to_a_worker_that_goes_idle(server_factory):
    server = server_factory(min_workers=2, max_workers=2)
    pool, seen = server.server.pool, Seen()
    short = frame_of(server, "short", SPIN, timeout_s=0.3)
    long = frame_of(server, "long", SPIN, timeout_s=3.0)
    queued = frame_of(server, "queued", "module.exports = 3")

    async def scenario():
        for _ in range(200):  # both workers up (min_workers=2), at most 10 s
            if len([w for w in pool.workers() if w.state == "idle"]) == 2:
                break
            await asyncio.sleep(0.05)
        s = asyncio.ensure_future(pool.run(short, seen.sink("short")))
        await asyncio.sleep(0.05)
        lg = asyncio.ensure_future(pool.run(long, seen.sink("long")))
        await asyncio.sleep(0)  # "long" has not begun: "queued" goes behind it
        q = asyncio.ensure_future(pool.run(queued, seen.sink("queued")))
        await asyncio.sleep(0)
        holder = next(w.id for w in pool.workers() if any(s.frame is queued for s in w.slots))
        result = await q
        ended = time.monotonic()
        await s
        return holder, result, ended, await lg

    holder, result, ended, long_done = server.call(scenario())
    assert result.ok and result.value == "3"
    ran_on, _ = seen.began["queued"]
    long_worker, long_began = seen.began["long"]
    assert holder == long_worker and ran_on != long_worker  # taken back, run elsewhere
    assert ended - long_began < 2.0  # long before the long task's 3 s
    assert long_done.reason is FailureReason.TIMEOUT


def test_a_queued_task_survives_its_workers_death(server_factory):
    server = server_factory(min_workers=1, max_workers=1)
    pool, seen = server.server.pool, Seen()
    victim = frame_of(server, "victim", SPIN, timeout_s=10.0)
    after = frame_of(server, "after", "module.exports = 4")

    async def scenario():
        began = seen.event("victim")
        a, b = await one_behind_another(pool, seen, victim, after)
        await asyncio.wait_for(began.wait(), 10)
        worker = pool.workers()[0]
        assert [s.frame.id for s in worker.slots] == ["victim", "after"]
        os.kill(worker.pid, signal.SIGKILL)
        return worker.id, await a, await b

    killed, a, b = server.call(scenario())
    assert a.reason is FailureReason.WORKER_LOST
    assert b.ok and b.value == "4" and seen.began["after"][0] != killed


def test_cancelling_a_queued_task_leaves_the_running_one_alone(server_factory):
    server = server_factory(min_workers=1, max_workers=1)
    pool, seen = server.server.pool, Seen()
    first, second = spin_then_two(server)

    async def scenario():
        a, b = await one_behind_another(pool, seen, first, second)
        await asyncio.sleep(0.05)
        assert pool.cancel("second", second)
        return await b, await a

    b, a = server.call(scenario())
    assert b.reason is FailureReason.CANCELLED and "second" not in seen.began
    assert a.reason is FailureReason.TIMEOUT  # it ran its course, not cancelled


def test_a_task_cancelled_while_it_is_taken_back_is_not_sent_again(server_factory):
    server = server_factory(min_workers=1, max_workers=1)
    pool, seen = server.server.pool, Seen()
    first, second = spin_then_two(server)

    async def scenario():
        a, b = await one_behind_another(pool, seen, first, second)
        await asyncio.sleep(0.05)
        worker = pool.workers()[0]
        slot = next(s for s in worker.slots if s.frame is second)
        worker.withdraw(slot, "steal")  # as for a worker gone idle ...
        assert pool.cancel("second", second)  # ... and the client cancels it meanwhile
        return await b, await a

    b, a = server.call(scenario())
    assert b.reason is FailureReason.CANCELLED and "second" not in seen.began
    assert a.reason is FailureReason.TIMEOUT
