"""Retry decisions: which outcomes may be sent again, after how long, and to which lane.

Its own concern because these are decisions rather than I/O: the stream's placement
(`_placement.py`) and the unary Run path (`_unary.py`) both ask the same questions, and
the tests answer them with an injected clock and no sleeps. The promise they keep is
"at most once": only an outcome that proves the task never ran is retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from zako_sdk._outcomes import Outcome
from zako_sdk.errors import MessageTooLarge, TaskRejected, Unavailable
from zako_sdk.models import Retry

_NEVER_RAN_CODES = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE})


def never_ran(outcome: Outcome, *, sent: bool) -> bool:
    """Whether `outcome` proves the task did not run, so sending it again cannot run it twice.

    True for a rejection for capacity (RESOURCE_EXHAUSTED: queue or quota full;
    UNAVAILABLE: the replica is draining) and for a transport failure of a task that
    never left this client (`sent` False). Everything else may have run: a result, a
    failure, a cancel, and a stream that broke after the task was written.
    """
    if isinstance(outcome, MessageTooLarge):  # RESOURCE_EXHAUSTED, yet never succeeds
        return False
    if isinstance(outcome, TaskRejected):
        return outcome.code in _NEVER_RAN_CODES
    return isinstance(outcome, Unavailable) and not sent


def backoff_delay(retry: Retry, attempt: int, rand: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based); `rand` in [0, 1)."""
    base = min(retry.max_backoff, retry.backoff * 2.0 ** (attempt - 1))
    return max(0.0, base * (1 + retry.jitter * (2 * rand - 1)))


@dataclass(frozen=True)
class RetryPlan:
    """What to do after an attempt that never ran.

    `delay`: wait at least this long before the next attempt (the backoff).
    `cooldown`: keep new attempts off the replica that refused for this long (its
    retry_after; a replica we could not reach gets the backoff). So with one replica
    the task waits max(retry_after, backoff), as the server asked; with several it goes
    to another one after the backoff alone, since retry_after speaks for its sender.
    """

    delay: float
    cooldown: float


def plan_retry(
    retry: Retry | None, attempt: int, outcome: Outcome, *, sent: bool, rand: float
) -> RetryPlan | None:
    """The retry after attempt number `attempt` ended in `outcome`, or None to give up.

    plan = plan_retry(Retry(), 1, overloaded, sent=True, rand=random.random())
    """
    if retry is None or attempt >= retry.attempts or not never_ran(outcome, sent=sent):
        return None
    delay = backoff_delay(retry, attempt, rand)
    retry_after = outcome.retry_after if isinstance(outcome, TaskRejected) else None
    return RetryPlan(delay=delay, cooldown=delay if retry_after is None else retry_after)


def pick_lane(
    cool_until: Sequence[float],
    start: int,
    now: float,
    avoid: int | None = None,
    order: Sequence[int] | None = None,
) -> int:
    """The lane (a replica's stream) for the next attempt, round robin from `start`, or
    in `order` when given (a routed task's rendezvous ranking; `start` is then unused).

    The first lane in that order that is not cooling down at `now` and is not `avoid`
    (the one that just refused); else `avoid` if it is not cooling; else whichever lane's
    cooldown ends first (the caller waits for it). Never fails: with every replica
    refusing, the task waits rather than giving up early, and `Retry.attempts` bounds that.
    """
    n = len(cool_until)
    if n == 0:
        raise ValueError("no lanes to pick from")
    if order is None:
        order = [(start + k) % n for k in range(n)]
    for lane in order:
        if lane != avoid and cool_until[lane] <= now:
            return lane
    if avoid is not None and 0 <= avoid < n and cool_until[avoid] <= now:
        return avoid
    return min(order, key=lambda lane: cool_until[lane])
