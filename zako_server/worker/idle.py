"""When a worker's idle spell has lasted long enough to settle or collect its warm isolate.

The run loop (process.py) does two things only once the worker has idled a while:
SETTLE_AFTER_S into a spell it resets the warm isolate in an eval of its own
(isolates.settle), and IDLE_COLLECT_S into one it collects the isolate's garbage.

Why a clock and not a timer per spell: under a stream of tasks a worker idles between
most of them, for a fraction of a millisecond, and the loop armed both timers at the
start of every spell and cancelled them at its end: two TimerHandles a task, each pushed
onto the loop's heap (Python-level comparisons) and left there cancelled. Here a spell
only records when it began; the one timer armed in an earlier spell stays armed, and when
it fires it looks at the current spell (if any) and arms itself again for whatever is due
next. Under a stream that is one timer every SETTLE_AFTER_S or so, not two per task.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

# How long an idle worker waits after its last task before collecting the warm isolate's
# garbage.
IDLE_COLLECT_S = 1.0
# How long an idle worker waits for a next task of the warm isolate's key (which resets
# it in its own eval) before resetting it in an eval of its own (isolates.settle): at the
# pace of sequential calls the next task comes sooner, and the extra eval cost a fifth of
# a trivial task's worker CPU; a chain of leftover microtasks runs at most this longer.
SETTLE_AFTER_S = 0.005
# A timer may fire this much before its time (the loop's clock resolution and rounding).
_EARLY_S = 0.0005


class IdleClock:
    """Calls `settle` SETTLE_AFTER_S and `collect` IDLE_COLLECT_S into an idle spell (if
    the spell asked for them), with at most one loop timer armed. Use it on the loop."""

    def __init__(self, settle: Callable[[], None], collect: Callable[[], None]) -> None:
        self._settle = settle
        self._collect = collect
        self._since: float | None = None  # when the current spell began (None: busy)
        self._wants_settle = False
        self._wants_collect = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def begin(self, settle: bool, collect: bool) -> None:
        """An idle spell begins: whether it should settle and collect if it lasts."""
        loop = asyncio.get_running_loop()
        self._since = loop.time()
        self._wants_settle, self._wants_collect = settle, collect
        due = self._due()
        if due < self._timer_at:  # an armed timer fires first and looks again then
            self._arm(loop, due)

    def end(self) -> None:
        """The spell is over (the timer stays armed for a later one)."""
        self._since = None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at, self._since = None, math.inf, None

    @property
    def armed(self) -> bool:
        return self._timer is not None

    def _due(self) -> float:
        if self._since is None:
            return math.inf
        if self._wants_settle:
            return self._since + SETTLE_AFTER_S
        if self._wants_collect:
            return self._since + IDLE_COLLECT_S
        return math.inf

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        """The one timer, at `at` (none when nothing is due)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf
        if at != math.inf:
            self._timer, self._timer_at = loop.call_at(at, self._fire), at

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        since = self._since
        if since is None:
            return  # busy: the next spell arms it again
        loop = asyncio.get_running_loop()
        now = loop.time() + _EARLY_S
        if self._wants_settle and now >= since + SETTLE_AFTER_S:
            self._wants_settle = False
            self._settle()
        if self._wants_collect and now >= since + IDLE_COLLECT_S:
            self._wants_collect = False
            self._collect()
        self._arm(loop, self._due())
