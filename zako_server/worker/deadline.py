"""The time limit of the task a worker drives, on one loop timer for all its tasks.

Why not a timer per task: a worker drives one task at a time, most of them for well
under a millisecond against a limit of seconds, and a `call_later` per task that is
cancelled at its end put a TimerHandle a task on the loop's heap (Python-level
comparisons on every push) where it stayed, cancelled, until the loop swept it. Here the
timer armed for one task's deadline stays armed when that task ends; when it fires it
looks at the task being driven then, interrupts it if its deadline has passed, and else
arms itself again for that task's deadline. Under a stream of tasks with one limit that
is one timer per limit's length, not one per task.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

# A timer may fire this much before its time (the loop's clock resolution and rounding).
_EARLY_S = 0.0005


class DeadlineTimer:
    """Calls the current task's `expire` once its deadline passes. Use it on the loop."""

    def __init__(self) -> None:
        self._deadline = math.inf
        self._expire: Callable[[], None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def start(self, seconds: float, expire: Callable[[], None]) -> None:
        """A task is driven from now on, for at most `seconds`."""
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + seconds
        self._expire = expire
        if self._deadline < self._timer_at:  # else the armed timer comes first, looks again
            self._arm(loop, self._deadline)

    def stop(self) -> None:
        """The task is no longer driven (the timer stays armed for a later one)."""
        self._expire, self._deadline = None, math.inf

    def close(self) -> None:
        self.stop()
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, math.inf

    @property
    def armed(self) -> bool:
        return self._timer is not None

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = loop.call_at(at, self._fire), at

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        expire = self._expire
        if expire is None:
            return  # nothing driven: the next task arms it again
        loop = asyncio.get_running_loop()
        if loop.time() + _EARLY_S >= self._deadline:
            self._expire = None
            expire()
        else:
            self._arm(loop, self._deadline)
