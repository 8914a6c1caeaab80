"""#12 item 5: one tenant's burst never shuts another tenant out of the shared queue.

Unit tests drive the admission policy directly (pure logic, virtual time); the last
test floods a real server from one tenant and checks another tenant still gets in.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc
from zako_server.server.admission import Admission
from zako_server.server.config import build_settings
from zako_server.server.errors import Overloaded
from zako_server.server.heuristics import Machine
from zako_server.server.quotas import AdmissionPolicy

TERMINAL = {"completed", "failed", "cancelled", "rejected"}


def make(queue_capacity: int, **policy) -> Admission:
    return Admission(
        AdmissionPolicy(capacities={"workers": 1.0}, queue_capacity=queue_capacity, **policy),
        clock=lambda: 0.0,
        timers=False,
    )


def flood(adm: Admission, tenant: str, limit: int = 10_000) -> int:
    """Enqueue until refused; how many went in."""
    for n in range(limit):
        try:
            adm.enqueue(f"{tenant}{n}", tenant=tenant)
        except Overloaded:
            return n
    return limit


async def test_a_lone_tenant_holds_at_most_half_the_queue_and_a_newcomer_gets_in():
    adm = make(queue_capacity=1024)
    # One runs at once (one worker), then it may hold no more than is left free.
    assert flood(adm, "a") == 1 + 512
    assert adm.statistics().tenants["a"].queued == 512
    with pytest.raises(Overloaded) as refused:
        adm.enqueue("a-more", tenant="a")
    assert refused.value.quota == "tenant/a/queue_share" and refused.value.retry_after
    assert "fair share" in refused.value.message
    ticket, position = adm.enqueue("b0", tenant="b")  # before the fix: "queue is full"
    assert ticket.state == "waiting" and position == 512


async def test_each_of_several_flooding_tenants_is_bounded_by_its_share():
    adm = make(queue_capacity=1200)
    flood(adm, "a")
    flood(adm, "b")
    flood(adm, "c")
    queued = {t: use.queued for t, use in adm.statistics().tenants.items()}
    # Each takes at most what was free when it came: 1/2, then 1/4, then 1/8 of it,
    # and no tenant holds more than half, whatever the order.
    assert queued == {"a": 600, "b": 300, "c": 150}
    assert adm.statistics().queued < 1200  # still room for a fourth tenant
    adm.enqueue("d0", tenant="d")


async def test_the_share_bounds_bytes_too():
    adm = make(queue_capacity=100, queue_capacity_bytes=1000)
    adm.enqueue("run", tenant="a", size_bytes=10)  # granted at once: not in the queue
    adm.enqueue("a1", tenant="a", size_bytes=400)
    with pytest.raises(Overloaded) as refused:
        adm.enqueue("a2", tenant="a", size_bytes=250)  # 650 held > 600 free
    assert refused.value.quota == "tenant/a/queue_share_bytes"
    adm.enqueue("b1", tenant="b", size_bytes=500)


async def test_a_greedy_tenant_gets_in_again_once_its_share_drains():
    adm = make(queue_capacity=10)
    running, _ = adm.enqueue("a-run", tenant="a")
    assert flood(adm, "a") == 5
    adm.release(running)  # the next of a's waiting tasks starts: a holds 4, 6 free
    adm.enqueue("a-again", tenant="a")


def test_defaults_are_consistent_a_tenant_quota_never_exceeds_the_queue():
    machine = Machine(cpus=64, cpus_source="test", memory_bytes=1 << 36, memory_source="test")
    settings = build_settings({}, env={}, machine=machine)
    assert settings.tenant_max_queued <= settings.queue_capacity
    small = build_settings({"queue_capacity": "100"}, env={}, machine=machine)
    assert small.tenant_max_queued == 100
    explicit = build_settings(
        {"queue_capacity": "100", "tenant_max_queued": "7"}, env={}, machine=machine
    )
    assert explicit.tenant_max_queued == 7


async def _submit(stub, tenant: str, tasks: list[pb.Task]) -> dict[str, pb.SubmitResponse]:
    async def requests():
        for task in tasks:
            yield pb.SubmitRequest(task=task)

    ends: dict[str, pb.SubmitResponse] = {}
    call = stub.Submit(requests(), metadata=(("x-zako-tenant", tenant),), timeout=60)
    async for event in call:
        if event.WhichOneof("event") in TERMINAL:
            ends[event.task_id] = event
            if len(ends) == len(tasks):
                break
    call.cancel()
    return ends


async def test_one_tenants_flood_on_a_real_server_leaves_room_for_another(server_factory):
    server = server_factory(min_workers=1, max_workers=1, queue_capacity=16)
    busy = "const s = Date.now(); while (Date.now() - s < 400) {} module.exports = 1"
    flood_tasks = [
        pb.Task(id=f"a{i}", source=busy, context=pb.CONTEXT_KIND_CONFIG, system_access=True)
        for i in range(40)
    ]
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        flooding = asyncio.ensure_future(_submit(stub, "acme", flood_tasks))
        for _ in range(500):  # until acme's burst has been answered up to its share
            stats = await stub.Stats(pb.StatsRequest())
            acme = [t for t in stats.tenants if t.tenant == "acme"]
            if acme and acme[0].rejected:
                break
            await asyncio.sleep(0.01)
        other = await _submit(stub, "beta", [pb.Task(id="b0", source="module.exports = 2")])
        assert other["b0"].WhichOneof("event") == "completed", other["b0"]
        acme_ends = await flooding
    refused = [e.rejected for e in acme_ends.values() if e.WhichOneof("event") == "rejected"]
    assert refused and all(r.quota == "tenant/acme/queue_share" for r in refused)
    # One running, one sent behind it to its worker (prefetch, pool.py), then its share
    # of the queue: half of the 16 places.
    assert sum(e.WhichOneof("event") == "completed" for e in acme_ends.values()) <= 2 + 8


async def test_a_task_taking_its_place_again_after_backpressure_is_not_judged_twice():
    adm = make(queue_capacity=10)
    adm.enqueue("a-run", tenant="a")
    assert flood(adm, "a") == 5
    # The engine re-enqueues a task it accepted earlier whose stream held it back: the
    # share judged it once; refusing it now would fail an accepted task.
    accepted = adm.statistics().tenants["a"].accepted
    ticket, _ = adm.enqueue("a-held", tenant="a", readmit=True)
    assert ticket.state == "waiting"
    # ... and it was counted as accepted once, when it first was.
    assert adm.statistics().tenants["a"].accepted == accepted
    with pytest.raises(Overloaded):
        adm.enqueue("a-new", tenant="a")
