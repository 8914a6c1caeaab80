"""The time limit of the task being driven (worker/deadline.py): it expires a task that
outlives it, never one that ended, and a stream of short tasks arms few timers."""

from __future__ import annotations

import asyncio

from tests.worker.conftest import ArmedTimers
from zako_server.worker.deadline import DeadlineTimer


async def test_a_task_that_outlives_its_limit_expires_once() -> None:
    timer = DeadlineTimer()
    expired: list[float] = []
    loop = asyncio.get_running_loop()
    began = loop.time()
    timer.start(0.03, lambda: expired.append(loop.time() - began))
    await asyncio.sleep(0.1)
    assert len(expired) == 1
    assert 0.0295 <= expired[0] < 0.09
    timer.stop()
    timer.close()


async def test_a_task_that_ended_is_never_expired_and_the_next_gets_its_own_limit() -> None:
    timer = DeadlineTimer()
    first: list[str] = []
    second: list[float] = []
    loop = asyncio.get_running_loop()
    timer.start(0.02, lambda: first.append("expired"))
    timer.stop()  # it ended at once; the timer stays armed
    assert timer.armed
    await asyncio.sleep(0.01)
    began = loop.time()
    timer.start(0.05, lambda: second.append(loop.time() - began))
    await asyncio.sleep(0.03)  # the first task's deadline passed: nothing expires
    assert first == [] and second == []
    await asyncio.sleep(0.06)
    assert first == []
    assert len(second) == 1 and second[0] >= 0.0495


async def test_a_shorter_limit_than_the_armed_timer_is_not_late() -> None:
    timer = DeadlineTimer()
    timer.start(10.0, lambda: None)
    timer.stop()
    expired: list[str] = []
    timer.start(0.02, lambda: expired.append("expired"))
    await asyncio.sleep(0.08)
    assert expired == ["expired"]
    timer.close()
    assert not timer.armed


async def test_a_stream_of_short_tasks_arms_few_timers(armed_timers: ArmedTimers) -> None:
    timer = DeadlineTimer()
    expired: list[int] = []
    for n in range(1_000):
        timer.start(0.005, lambda n=n: expired.append(n))  # type: ignore[misc]
        timer.stop()
        if n % 50 == 0:
            await asyncio.sleep(0.001)
    assert expired == []
    # With a timer per task this counts every task.
    assert armed_timers.count < 100, armed_timers.count
    timer.close()
