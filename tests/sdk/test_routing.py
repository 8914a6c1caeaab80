"""Routing hermetic tasks by action digest: the key, the rendezvous order, the pick."""

from __future__ import annotations

import collections

import pytest

from zako_sdk import TaskSpec
from zako_sdk._base import prepare
from zako_sdk._replicas import Cluster
from zako_sdk._retries import pick_lane
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


async def test_only_a_single_plain_replica_is_not_routed():
    assert not Cluster(TARGETS[:1], credentials=None, options=None).routes
    assert Cluster(["dns:///zako:50051"], credentials=None, options=None).routes  # many, maybe
    assert Cluster(TARGETS, credentials=None, options=None).routes


async def test_a_dns_name_is_ranked_by_its_addresses_and_resolved_again(monkeypatch):
    from zako_sdk import _addresses
    from zako_sdk._replicas import Replica

    answers = [["10.1.0.1", "10.1.0.2"], ["10.1.0.2", "10.1.0.3"]]
    asked = []

    async def resolve(self: Replica) -> list[str]:
        asked.append(self.target)
        return [f"ipv4:{ip}:50051" for ip in answers[min(len(asked), len(answers)) - 1]]

    monkeypatch.setattr(Replica, "resolve", resolve)
    now = [0.0]
    cluster = Cluster(
        ["dns:///zako-headless:50051", TARGETS[0]],
        credentials=None,
        options=None,
        clock=lambda: now[0],
    )
    assert cluster.routes
    lanes = await cluster.route_lanes()
    names = [lane.replica.target for lane in lanes]
    assert names == ["ipv4:10.1.0.1:50051", "ipv4:10.1.0.2:50051", TARGETS[0]]
    assert all(not lane.replica.balanced for lane in lanes)  # each one backend
    assert await cluster.route_lanes() is lanes and len(asked) == 1  # until REFRESH
    k = key(input=1)
    assert cluster.pick(lanes, route=k).replica.target == names[rendezvous_order(k, names)[0]]
    kept = lanes[1]
    cluster.unreachable(lanes[0])  # a pinned address that could not be reached
    again = await cluster.route_lanes()
    assert [lane.replica.target for lane in again][:2] == [
        "ipv4:10.1.0.2:50051",
        "ipv4:10.1.0.3:50051",
    ]
    assert again[0] is kept  # the same lane (stream, cooldown) for an address that stayed
    now[0] += _addresses.REFRESH + 1
    await cluster.route_lanes()
    assert len(asked) == 3
    await cluster.aclose()
