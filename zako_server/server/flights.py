"""A hermetic task's part in the action cache's single flight.

    key, no stored outcome, no flight ─▶ lead: run; keep the lines; settle at the end
    an identical task in flight ───────▶ join: wait for it to land, take its outcome
    settle(): store the outcome (if it may be) and land the flight, waking the joiners
    abandon(): a leader held by its stream's backpressure lands its flight empty early

Its own concern: what ties an accepted task's record to a key and a flight. The cache
(action_cache.py) knows nothing of tasks or their records; the engine (engine.py)
decides when a task leads, joins or settles, and what it does with the answer.
"""

from __future__ import annotations

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_server.server.action_cache import ActionCache, Flight, Outcome
from zako_server.server.records import TaskRecord


def lead(cache: ActionCache, record: TaskRecord, key: str) -> None:
    """The task will run with a key: keep its lines to store with its outcome, and
    let identical tasks join it (unless another one already leads)."""
    record.cache_key, record.lines = key, []
    record.flight = cache.lead(key)
    if record.job.cache_policy != pb.CACHE_POLICY_REFRESH:
        cache.misses += 1


def settle(cache: ActionCache | None, record: TaskRecord) -> None:
    """A led task ended: store its outcome if it may be, and wake its joiners with
    it (or with None, so they run themselves). Once per task."""
    key, flight, lines = record.cache_key, record.flight, record.lines
    record.cache_key = record.flight = record.lines = None
    if key is None or cache is None:
        return
    outcome = None
    if record.terminal is not None and not record.uncacheable:
        outcome = Outcome.of(record.terminal, lines or (), record.logs_dropped)
    if outcome is not None:
        cache.store(key, outcome)
    if flight is not None:
        cache.land(key, flight, outcome)


def abandon(cache: ActionCache | None, record: TaskRecord) -> None:
    """The task leading a flight will not start soon (its stream's backpressure holds
    it): land the flight with no outcome, so one of its joiners leads instead; the task
    keeps its key and still stores its own outcome when it ends."""
    if record.flight is not None and record.cache_key and cache is not None:
        cache.land(record.cache_key, record.flight, None)
        record.flight = None


async def join(
    cache: ActionCache, key: str, outcome: Outcome | None, flight: Flight | None
) -> Outcome | None:
    """The outcome to answer with: `outcome` (a stored one), or that of the flight
    once it lands; if that one cannot be shared, whatever is stored by then, or the
    flight of whoever leads next. None: nobody leads and nothing is stored (the task
    runs itself)."""
    while outcome is None and flight is not None:
        await flight.landed.wait()
        outcome = flight.outcome
        if outcome is not None:
            cache.joins += 1
        else:
            outcome = cache.lookup(key)
            flight = cache.flight(key)
    return outcome
