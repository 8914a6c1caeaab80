"""How long a message on a busy Submit stream waits for company: one rule for both ends.

The SDK's writer holds a task back so that others join it in one TaskBatch
(zako_sdk/_wire.py), and the server holds an event back so that others share its
EventBatch (zako_server/server/outbox.py). Both face the same trade — fewer messages
against added latency — with the same evidence, the time between task ends on the
stream, so they share this module (the server already takes the contract from this
package).
"""

from __future__ import annotations

from collections.abc import Callable

# A message waits at most this long for company (only on a stream with many in flight)…
LINGER_MAX = 0.005
# …and at most this share of what a task of the stream takes (in flight * time between
# ends: Little's law), so lingering adds at most 5% to its latency.
LINGER_SHARE = 0.05
# How fast the measure of the time between ends follows a change (an EWMA weight).
PACE_WEIGHT = 0.1


class Pace:
    """How long the next message of a busy stream may wait for others to share it.

    With `n` tasks in flight ending every `gap` seconds, a task takes about n * gap
    (Little's law). Holding a message back for `linger` = min(LINGER_MAX,
    LINGER_SHARE * n * gap) gathers linger / gap others into it at a cost of at most 5%
    of their latency, and while n is that large the server has a queue, so its workers
    do not wait either. A closed loop of callers has one task end per worker run, so
    without it nearly every message would leave alone. Below 1 / LINGER_SHARE = 20
    tasks in flight none would join, so none waits.

        pace = Pace(loop.time); pace.ended(); delay = pace.linger(in_flight=64)
    """

    __slots__ = ("_clock", "_gap", "_last")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._last = clock()
        self._gap = 1.0  # no evidence yet: as if tasks ended seldom (so no lingering)

    def ended(self) -> None:
        """A task of the stream has ended (its terminal event arrived or was emitted)."""
        now = self._clock()
        self._gap += (now - self._last - self._gap) * PACE_WEIGHT
        self._last = now

    def linger(self, in_flight: int) -> float:
        """Seconds the next message should wait for company (0: send it now)."""
        gap = self._gap
        delay = min(LINGER_MAX, LINGER_SHARE * in_flight * gap)
        return delay if delay >= gap else 0.0
