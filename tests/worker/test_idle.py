"""The idle clock (worker/idle.py): settle and collect come once a spell has lasted long
enough, never for spells that end sooner, and a stream of short spells arms one timer,
not one per spell."""

from __future__ import annotations

import asyncio

from tests.worker.conftest import ArmedTimers
from zako_server.worker import idle
from zako_server.worker.idle import IdleClock


class _Calls:
    def __init__(self) -> None:
        self.settled = 0
        self.collected = 0

    def settle(self) -> None:
        self.settled += 1

    def collect(self) -> None:
        self.collected += 1


async def test_a_spell_that_lasts_settles_once_then_collects_once(monkeypatch) -> None:
    monkeypatch.setattr(idle, "IDLE_COLLECT_S", 0.05)
    calls = _Calls()
    clock = IdleClock(calls.settle, calls.collect)
    clock.begin(settle=True, collect=True)
    await asyncio.sleep(0.02)
    assert (calls.settled, calls.collected) == (1, 0)  # SETTLE_AFTER_S (5 ms) in
    await asyncio.sleep(0.06)
    assert (calls.settled, calls.collected) == (1, 1)
    await asyncio.sleep(0.06)
    assert (calls.settled, calls.collected) == (1, 1)  # nothing more is due
    assert not clock.armed
    clock.end()


async def test_spells_shorter_than_the_settle_time_settle_nothing_and_arm_few_timers(
    armed_timers: ArmedTimers,
) -> None:
    calls = _Calls()
    clock = IdleClock(calls.settle, calls.collect)
    loop = asyncio.get_running_loop()
    end = loop.time() + 0.1
    spells = 0
    while loop.time() < end and spells < 5_000:
        clock.begin(settle=True, collect=False)
        assert clock.armed
        clock.end()  # a task came at once
        await asyncio.sleep(0)
        spells += 1
    assert spells > 100
    assert calls.settled == 0
    # One timer per SETTLE_AFTER_S or so (each firing finds the worker busy), not one a
    # spell: with a timer per spell this counts every spell.
    assert armed_timers.count < spells / 10, (armed_timers.count, spells)
    clock.close()
    assert not clock.armed


async def test_a_later_spell_that_lasts_still_settles() -> None:
    calls = _Calls()
    clock = IdleClock(calls.settle, calls.collect)
    clock.begin(settle=True, collect=False)
    await asyncio.sleep(0.003)
    clock.end()  # busy before it was due
    await asyncio.sleep(0.01)  # the timer fired while busy and did nothing
    assert calls.settled == 0
    clock.begin(settle=True, collect=False)
    await asyncio.sleep(0.02)
    assert calls.settled == 1
    clock.close()


async def test_a_spell_that_wants_nothing_arms_nothing() -> None:
    calls = _Calls()
    clock = IdleClock(calls.settle, calls.collect)
    clock.begin(settle=False, collect=False)
    assert not clock.armed
    await asyncio.sleep(0.02)
    assert (calls.settled, calls.collected) == (0, 0)
    clock.close()
