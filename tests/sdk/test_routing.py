"""Routing hermetic tasks by action digest: the key, the rendezvous order, the pick."""

from __future__ import annotations

import collections

import pytest

from zako_sdk import TaskSpec
from zako_sdk._base import pick_lane, prepare
from zako_sdk._replicas import Cluster
from zako_sdk._routing import action_key, rendezvous_order, routable

TARGETS = ["10.0.0.1:50051", "10.0.0.2:50051", "10.0.0.3:50051"]


def key(**options: object) -> bytes:
    return action_key(
        prepare(TaskSpec("module.exports = (x) => x", **options), default_timeout=None).task
    )  # type: ignore[arg-type]


def test_the_key_is_the_same_for_the_same_task_whatever_its_id_and_limits():
    assert key(input=1, task_id="a", timeout=1.0) == key(input=1, task_id="b", priority=3)
    assert key(modules={"a.js": "1"}) == key(modules={"a.js": "1"})


@pytest.mark.parametrize(
    "change",
    [
        {"input": 2},
        {"context": "rule"},
        {"labels": {"k": "v"}},
        {"epoch": 1.0},
        {"seed": "s"},
        {"entry_name": "other.js"},
        {"modules": {"a.js": "2"}},
    ],
)
def test_what_decides_the_outcome_changes_the_key(change):
    assert key(input=1, modules={"a.js": "1"}) != key(
        **{"input": 1, "modules": {"a.js": "1"}, **change}
    )


def test_only_hermetic_cache_using_tasks_are_routed():
    def task(**options: object):
        return prepare(TaskSpec("1", **options), default_timeout=None).task  # type: ignore[arg-type]

    assert routable(task()) and routable(task(cache="refresh"))
    assert not routable(task(context="config", system_access=True))
    assert not routable(task(cache="skip"))


def test_every_client_ranks_the_replicas_alike_whatever_their_order():
    k = key(input=7)
    order = [TARGETS[i] for i in rendezvous_order(k, TARGETS)]
    shuffled = [TARGETS[2], TARGETS[0], TARGETS[1]]
    assert [shuffled[i] for i in rendezvous_order(k, shuffled)] == order
    assert sorted(order) == sorted(TARGETS)


def test_distinct_tasks_spread_and_a_lost_replica_moves_only_its_own():
    keys = [key(input=n) for n in range(600)]
    first = [TARGETS[rendezvous_order(k, TARGETS)[0]] for k in keys]
    counts = collections.Counter(first)
    assert all(count > 120 for count in counts.values()), counts  # ~200 each
    survivors = TARGETS[:2]
    for k, before in zip(keys, first, strict=True):
        after = survivors[rendezvous_order(k, survivors)[0]]
        if before in survivors:
            assert after == before  # tasks of the surviving replicas stay put


def test_pick_lane_follows_the_order_skipping_cooling_and_avoided_lanes():
    assert pick_lane([0, 0, 0], 0, now=1, order=[2, 0, 1]) == 2
    assert pick_lane([0, 0, 5], 0, now=1, order=[2, 0, 1]) == 0  # 2 cools down
    assert pick_lane([0, 0, 0], 0, now=1, avoid=2, order=[2, 0, 1]) == 0
    assert pick_lane([5, 5, 0], 0, now=1, avoid=2, order=[2, 0, 1]) == 2
    assert pick_lane([9, 7, 8], 0, now=1, order=[2, 0, 1]) == 1  # soonest out of cooldown


async def test_cluster_routes_by_key_and_fails_over_in_rendezvous_order():
    now = [100.0]
    cluster = Cluster(TARGETS, credentials=None, options=None, clock=lambda: now[0])
    lanes = await cluster.lanes()
    k = key(input=42)
    order = rendezvous_order(k, TARGETS)
    assert cluster.pick(lanes, route=k) is lanes[order[0]]
    assert cluster.pick(lanes, route=k) is lanes[order[0]]  # again: the same one
    cluster.cool(lanes[order[0]], 5.0)
    assert cluster.pick(lanes, route=k) is lanes[order[1]]
    now[0] += 6
    assert cluster.pick(lanes, route=k) is lanes[order[0]]  # back once it cooled down
    assert cluster.pick(lanes, avoid=lanes[order[0]], route=k) is lanes[order[1]]
    # Without a key: round robin, as before.
    assert {cluster.pick(lanes).replica.target for _ in range(3)} == set(TARGETS)
    await cluster.aclose()


async def test_a_single_replica_or_a_dns_name_is_not_routed():
    assert not Cluster(TARGETS[:1], credentials=None, options=None).routes
    assert not Cluster(["dns:///zako:50051", TARGETS[0]], credentials=None, options=None).routes
    assert Cluster(TARGETS, credentials=None, options=None).routes
