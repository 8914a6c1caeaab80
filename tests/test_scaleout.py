"""Scale-out on loopback (issues 6 and 15): three real replicas, one SDK client over all.

Each replica has one worker, so "each replica ran some" means the SDK really spread the
load. One replica is shut down mid-load (what SIGTERM does: admission closes, then a
drain grace, then gRPC stops); the tasks it refused must run elsewhere, and no task may
end twice or run twice: the replicas' own `completed` counters must add up to exactly the
results the SDK handed out. Hermetic tasks go by their action digest (rendezvous), so a
repeated task finds the replica that ran it, and that replica's action cache answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import RunningServer

from zako_sdk import (
    AsyncClient,
    ModuleTree,
    Result,
    TaskCancelled,
    TaskHandle,
    TransportError,
    ZakoError,
)
from zako_sdk.proto.zako.v1 import executor_pb2 as pb

TRIVIAL = "module.exports = (n) => n * 2;"
SPIN = "module.exports = () => { for (;;) {} };"
TASKS = 1_000
WINDOW = 48  # tasks in flight at once: the load keeps arriving while a replica drains

pytestmark = pytest.mark.slow


@pytest.fixture
def replicas(server_factory: Callable[..., RunningServer]) -> list[RunningServer]:
    return [server_factory(min_workers=1, max_workers=1, drain_grace=3) for _ in range(3)]


def counters(replica: RunningServer) -> Any:
    """The replica's task counters, read on its own loop (it may have stopped serving)."""

    async def read() -> tuple[int, int, int]:
        c = replica.server.engine.counters
        return c.completed, c.cancelled, c.rejected.get("UNAVAILABLE", 0)

    return replica.call(read(), timeout=10)


async def wait_until(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        await asyncio.sleep(0.02)


async def test_cancels_reach_the_replica_that_runs_the_task(replicas):
    targets = [r.target for r in replicas]
    async with AsyncClient(targets) as client, AsyncClient(targets) as stranger:
        # cache="skip": identical tasks are not routed together, they go round robin.
        handles = [await client.submit(SPIN, timeout=60, cache="skip") for _ in range(3)]
        assert sorted(h.replica for h in handles) == sorted(targets)  # one per replica
        await wait_until(lambda: all(h.worker_id for h in handles), 30, "the spinners")

        first, second, third = handles
        await first.cancel("in band")  # on the task's own stream
        by_owner = await client.cancel(second.task_id, "unary, owner known")
        by_fan_out = await stranger.cancel(third.task_id, "unary, asked everyone")
        assert by_owner.previous_state == by_fan_out.previous_state == pb.TASK_STATE_RUNNING
        for handle, reason in zip(
            handles, ["in band", "owner known", "asked everyone"], strict=True
        ):
            with pytest.raises(TaskCancelled, match=reason) as info:
                await asyncio.wait_for(handle.result(), 30)
            assert info.value.was_running

        cluster = await client.stats_all()
        assert not cluster.errors
        # Each replica cancelled exactly the one task it was running.
        assert {t: s.tasks.cancelled for t, s in cluster.replicas.items()} == dict.fromkeys(
            targets, 1
        )
        assert cluster.total.tasks.cancelled == 3
        assert cluster.total.pool.max_workers == 3


async def test_a_thousand_tasks_spread_and_survive_a_replica_shutdown(replicas):
    doomed = replicas[2]
    targets = [r.target for r in replicas]
    outcomes: dict[str, list[Result | ZakoError]] = {}
    handles: dict[str, TaskHandle] = {}
    done_on: dict[str, int] = dict.fromkeys(targets, 0)
    shutdown: asyncio.Future[None] | None = None
    todo = iter(range(TASKS))

    async with AsyncClient(targets) as client:

        async def worker() -> None:
            nonlocal shutdown
            for n in todo:
                handle = await client.submit(TRIVIAL, input=n)
                handles[handle.task_id] = handle
                outcome = await handle.outcome()
                outcomes.setdefault(handle.task_id, []).append(outcome)
                if isinstance(outcome, Result):
                    assert outcome.value == 2 * n
                    done_on[handle.replica or ""] += 1
                # Mid-load: once the doomed replica has done a fair share, shut it down
                # in the background, as SIGTERM would, while the load keeps coming.
                if shutdown is None and done_on[doomed.target] >= 100:
                    shutdown = asyncio.wrap_future(
                        asyncio.run_coroutine_threadsafe(
                            doomed.server.shutdown(drain_grace=2), doomed.loop
                        )
                    )

        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(WINDOW))), 100)
        assert shutdown is not None, "the load ended before the shutdown began"
        await asyncio.wait_for(shutdown, 30)
        cluster = await client.stats_all()

    # Every task ended exactly once, as the SDK saw it.
    assert len(outcomes) == TASKS and all(len(seen) == 1 for seen in outcomes.values())
    results = [o[0] for o in outcomes.values() if isinstance(o[0], Result)]
    others = [o[0] for o in outcomes.values() if not isinstance(o[0], Result)]
    # What may end otherwise: a task the drain cut short, or one written to the doomed
    # replica's stream in the instant gRPC stopped (it may have arrived: never resent).
    for error in others:
        assert (isinstance(error, TaskCancelled) and error.reason == "server shutdown") or (
            isinstance(error, TransportError)
        ), repr(error)
    # Only tasks in flight on the doomed replica when it stopped can end so.
    assert len(others) <= WINDOW, others[:5]

    # The load was spread: every replica ran some.
    assert all(done_on[t] > 0 for t in targets), done_on
    assert set(cluster.replicas) == set(targets[:2]) and doomed.target in cluster.errors

    # No task ran twice: the replicas' own counts add up to exactly the SDK's results.
    completed = [s.tasks.completed for s in cluster.replicas.values()]
    doomed_completed, doomed_cancelled, doomed_refused = counters(doomed)
    assert sum(completed) + doomed_completed == len(results)
    assert doomed_completed == done_on[doomed.target]
    assert doomed_cancelled == sum(isinstance(e, TaskCancelled) for e in others)

    # The doomed replica refused tasks while draining; the SDK sent them elsewhere.
    retried = [h for h in handles.values() if h.attempts > 1]
    assert doomed_refused >= 1 and retried
    assert all(
        h.replica != doomed.target for h in retried if isinstance(outcomes[h.task_id][0], Result)
    )


# A task per input, each with the same small module tree: the tree's blobs go to the
# replica each task runs on, and the outcome is cached there.
CACHED_TREE = {"lib/square.js": "module.exports = (n) => n * n;"}
CACHED_ENTRY = "module.exports = (n) => require('./lib/square')(n) + 1;"
DISTINCT = 24
REPEATS = 3


async def test_repeated_hermetic_tasks_land_on_one_replica_and_hit_its_action_cache(replicas):
    targets = [r.target for r in replicas]
    tree = ModuleTree(CACHED_TREE)
    placed: dict[int, set[str]] = {n: set() for n in range(DISTINCT)}
    cached: dict[int, list[bool]] = {n: [] for n in range(DISTINCT)}
    async with AsyncClient(targets) as client:
        for _ in range(REPEATS):
            for n in range(DISTINCT):
                handle = await client.submit(CACHED_ENTRY, input=n, modules=tree)
                result = await handle
                assert result.value == n * n + 1
                placed[n].add(handle.replica or "")
                cached[n].append(result.cached)
        cluster = await client.stats_all()

    # Each task always went to one replica, and the tasks spread over all of them.
    assert all(len(where) == 1 for where in placed.values()), placed
    assert {next(iter(where)) for where in placed.values()} == set(targets)
    # The first call ran; every repeat was answered from that replica's cache.
    assert all(flags == [False] + [True] * (REPEATS - 1) for flags in cached.values()), cached
    per_replica = {t: s.action_cache for t, s in cluster.replicas.items()}
    assert sum(a.hits for a in per_replica.values()) == DISTINCT * (REPEATS - 1)
    assert sum(a.misses for a in per_replica.values()) == DISTINCT
    for target, stats in cluster.replicas.items():
        ran_here = sum(1 for where in placed.values() if target in where)
        assert stats.action_cache.misses == ran_here  # no replica ran another's task
        assert stats.action_cache.hits == ran_here * (REPEATS - 1)
        # The tree's blobs went to each replica once (the tree and its one file).
        assert stats.cas.uploads == 2
