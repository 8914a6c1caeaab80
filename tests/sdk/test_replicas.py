"""Both clients over several replicas (three scripted fakes, named a, b and c): spreading,
retrying elsewhere, cancel routing, and the Stats fan-out."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from test_streams import Face, FakeServer, script, unused_target

from zako_sdk import (
    AsyncClient,
    Client,
    ClientClosed,
    Overloaded,
    Retry,
    RPCError,
    TaskCancelled,
    TaskFailed,
    TaskSpec,
    TaskState,
    Unavailable,
)
from zako_sdk._base import prepare
from zako_sdk._cli_args import EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE
from zako_sdk._routing import action_key, rendezvous_order
from zako_sdk.cli import main
from zako_sdk.proto.zako.v1 import executor_pb2 as pb

FAST = Retry(attempts=3, backoff=0.01, jitter=0.0)


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeServer]]:
    servers = {name: FakeServer(name) for name in "abc"}
    yield servers
    for server in servers.values():
        server.stop()


def by_target(fakes: dict[str, FakeServer]) -> dict[str, str]:
    return {server.target: name for name, server in fakes.items()}


def make_client(kind: str, targets: Any, **options: Any) -> tuple[Face, Any]:
    inner = AsyncClient(targets, **options) if kind == "async" else Client(targets, **options)
    return Face(inner), inner


async def close(inner: Any) -> None:
    if isinstance(inner, Client):
        await asyncio.to_thread(inner.close)
    else:
        await inner.aclose()


@pytest.fixture(params=["async", "sync"])
async def client(
    request: pytest.FixtureRequest, fakes: dict[str, FakeServer]
) -> AsyncIterator[Face]:
    face, inner = make_client(
        request.param, [f.target for f in fakes.values()], retry=FAST, tenant="acme"
    )
    yield face
    await close(inner)


def counts(fakes: dict[str, FakeServer], ids: set[str]) -> dict[str, int]:
    return {name: sum(1 for i in f.executor.received if i in ids) for name, f in fakes.items()}


# A hermetic task that uses the action cache goes to the replica its action digest ranks
# first (rendezvous); with cache="skip" it has nothing to find there and goes round robin,
# which is what the tests of spreading below count on.
ROUND_ROBIN = "skip"


async def test_tasks_go_round_robin_over_the_replicas(client, fakes):
    handles = [await client.submit(script("echo"), input=n, cache=ROUND_ROBIN) for n in range(9)]
    assert [(await h.result()).value for h in handles] == list(range(9))
    assert counts(fakes, {h.task_id for h in handles}) == {"a": 3, "b": 3, "c": 3}
    names = by_target(fakes)
    for handle in handles:  # each handle knows where its task went
        assert handle.task_id in fakes[names[handle.replica]].executor.received
    assert fakes["a"].executor.tenants[-1] == "acme"  # the tenant header travels along


async def test_batch_splits_across_replicas_and_keeps_input_order(client, fakes):
    run = uuid.uuid4().hex[:8]  # the fakes outlive the test; ids must not repeat
    specs = [
        TaskSpec(
            script("echo", sleep=0.002 * (30 - n)),
            input=n,
            task_id=f"order-{run}-{n}",
            cache=ROUND_ROBIN,
        )
        for n in range(30)
    ]
    results = await client.batch(specs)
    assert [r.value for r in results] == list(range(30))
    assert counts(fakes, {s.task_id for s in specs}) == {"a": 10, "b": 10, "c": 10}


async def test_a_task_refused_by_a_draining_replica_runs_on_another(client, fakes):
    # b refuses with retry_after 30 s: the task must not wait for b, it goes elsewhere.
    started = time.monotonic()
    handles = [
        await client.submit(
            script("echo", refuse_on=["b"], retry_ms=30_000), input=n, cache=ROUND_ROBIN
        )
        for n in range(6)
    ]
    assert [(await h.result()).value for h in handles] == list(range(6))
    assert time.monotonic() - started < 10
    names = by_target(fakes)
    assert all(names[h.replica] != "b" for h in handles)
    retried = [h for h in handles if h.attempts == 2]
    assert retried and all(fakes["b"].executor.received.count(h.task_id) == 1 for h in retried)
    ids = {h.task_id for h in handles}
    assert counts(fakes, ids)["a"] + counts(fakes, ids)["c"] == 6  # each ran once


async def test_run_unary_refused_by_one_replica_runs_on_another(client, fakes):
    for n in range(3):
        result = await client.run_unary(
            script("echo", refuse_on=["a"], refuse_code=8, retry_ms=30_000), input=n
        )
        assert result.value == n


async def test_refusals_everywhere_give_up_after_the_attempts(client):
    with pytest.raises(Overloaded) as info:
        await client.run(script("echo", refuse_on=["a", "b", "c"], refuse_code=8))
    assert info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_failures_are_never_retried(client, fakes):
    handle = await client.submit(script("throw", message="once"))
    with pytest.raises(TaskFailed):
        await handle.result()
    assert handle.attempts == 1
    assert sum(f.executor.received.count(handle.task_id) for f in fakes.values()) == 1


@pytest.mark.parametrize("retry", [None, Retry(attempts=1)])
async def test_retry_can_be_turned_off(fakes, retry):
    async with AsyncClient(fakes["a"].target, retry=retry) as client:
        handle = await client.submit(script("echo", refuse_on=["a"], retry_ms=10))
        with pytest.raises(Overloaded):
            await handle
        assert handle.attempts == 1


async def test_one_replica_waits_max_of_retry_after_and_backoff(fakes):
    async with AsyncClient(fakes["a"].target, retry=FAST) as client:
        started = time.monotonic()
        handle = await client.submit(script("echo", refuse_times=2, retry_ms=200), input=7)
        assert (await handle).value == 7
        assert handle.attempts == 3 and time.monotonic() - started >= 0.4
        started = time.monotonic()
        result = await client.run_unary(script("echo", refuse_times=1, retry_ms=200), input=8)
        assert result.value == 8 and time.monotonic() - started >= 0.2


async def test_an_unreachable_replica_is_skipped_without_losing_tasks(fakes):
    targets = [fakes["a"].target, unused_target(), fakes["b"].target]
    async with AsyncClient(targets, retry=FAST) as client:
        handles = [
            await client.submit(script("echo"), input=n, cache=ROUND_ROBIN) for n in range(9)
        ]
        assert [(await h).value for h in handles] == list(range(9))
        assert {h.replica for h in handles} <= {fakes["a"].target, fakes["b"].target}
        assert any(h.attempts > 1 for h in handles)


async def test_in_band_cancel_goes_to_the_replica_that_has_the_task(client, fakes):
    handles = [await client.submit(script("hang")) for _ in range(3)]
    await asyncio.sleep(0.1)
    names = by_target(fakes)
    for handle in handles:
        await handle.cancel("in band")
        with pytest.raises(TaskCancelled, match="in band"):
            await handle.result()
        owner = names[handle.replica]
        for name, fake in fakes.items():
            assert ((handle.task_id, "in band") in fake.executor.in_band_cancels) is (name == owner)


async def test_unary_cancel_of_our_task_goes_to_its_replica_only(client, fakes):
    handle = await client.submit(script("hang"))
    await asyncio.sleep(0.1)
    response = await client.cancel(handle.task_id, "by id")
    assert response.previous_state == pb.TASK_STATE_RUNNING
    with pytest.raises(TaskCancelled):
        await handle.result()
    asked = [name for name, f in fakes.items() if handle.task_id in f.executor.unary_cancels]
    assert asked == [by_target(fakes)[handle.replica]]


async def test_unary_cancel_of_a_foreign_id_asks_every_replica(client, fakes):
    targets = [f.target for f in fakes.values()]
    async with AsyncClient(targets) as owner:
        handle = await owner.submit(script("hang"))
        await asyncio.sleep(0.1)
        # `client` never saw this task: it asks everyone, and one of them has it.
        assert (await client.cancel(handle.task_id)).previous_state == pb.TASK_STATE_RUNNING
        with pytest.raises(TaskCancelled):
            await handle
    assert all(handle.task_id in f.executor.unary_cancels for f in fakes.values())
    with pytest.raises(RPCError) as info:
        await client.cancel("nobody-has-this")
    assert info.value.code is grpc.StatusCode.NOT_FOUND


async def test_cancel_fan_out_with_a_replica_down_is_not_a_not_found(fakes):
    async with AsyncClient([fakes["a"].target, unused_target()], call_timeout=5) as client:
        with pytest.raises(Unavailable):
            await client.cancel("nobody-has-this")


async def test_stats_all_reports_each_replica_and_the_sum(client, fakes):
    cluster = await client.stats_all()
    assert set(cluster.replicas) == {f.target for f in fakes.values()}
    assert cluster.total.pool.max_workers == 6 and not cluster.errors
    assert cluster.total.tasks.completed == sum(
        s.tasks.completed for s in cluster.replicas.values()
    )
    assert sorted(cluster.total.versions.server.split(",")) == ["a", "b", "c"]


async def test_stats_all_lists_a_replica_that_did_not_answer(fakes):
    down = unused_target()
    async with AsyncClient([fakes["a"].target, down], call_timeout=5) as client:
        cluster = await client.stats_all()
        assert list(cluster.replicas) == [fakes["a"].target]
        assert isinstance(cluster.errors[down], Unavailable)
        assert cluster.total.pool.max_workers == 2
    async with AsyncClient(down, call_timeout=5) as client:
        with pytest.raises(Unavailable):
            await client.stats_all()


async def test_a_dns_target_balances_and_fans_out_by_address(fakes):
    port = fakes["a"].target.rsplit(":", 1)[1]
    async with AsyncClient(f"dns:///127.0.0.1:{port}", retry=FAST) as client:
        assert (await client.run(script("echo"), input=1)).value == 1
        assert (await client.run_unary(script("echo"), input=2)).value == 2
        cluster = await client.stats_all()
        assert list(cluster.replicas) == [f"ipv4:127.0.0.1:{port}"]
        handle = await client.submit(script("hang"))
        await asyncio.sleep(0.1)
        assert (await client.cancel(handle.task_id)).previous_state == pb.TASK_STATE_RUNNING
        with pytest.raises(TaskCancelled):
            await handle


def test_cli_stats_all_prints_each_replica_and_the_total(fakes, capsys):
    targets = ",".join(f.target for f in fakes.values())
    assert main(["stats", "--all", "--json", "--target", targets]) == EXIT_OK
    printed = json.loads(capsys.readouterr().out)
    assert set(printed["replicas"]) == set(targets.split(","))
    assert printed["total"]["pool"]["max_workers"] == 6 and printed["errors"] == {}


def test_cli_stats_all_with_a_replica_down_prints_the_rest_and_exits_4(fakes, capsys):
    down = unused_target()
    assert main(["stats", "--all", "--json", "--target", f"{fakes['a'].target},{down}"]) == (
        EXIT_UNAVAILABLE
    )
    captured = capsys.readouterr()
    assert json.loads(captured.out)["total"]["pool"]["max_workers"] == 2
    assert down in captured.err


def test_cli_cancel_asks_every_replica(fakes, capsys):
    targets = ",".join(f.target for f in fakes.values())
    with Client(fakes["c"].target) as owner:
        handle = owner.submit(script("hang"))
        time.sleep(0.1)
        assert main(["cancel", handle.task_id, "--target", targets]) == EXIT_OK
        assert json.loads(capsys.readouterr().out) == {"previous_state": "running"}
        with pytest.raises(TaskCancelled):
            handle.result(timeout=5)


async def test_a_task_waiting_for_its_retry_is_cancelled_here(fakes):
    # One replica asks for 30 s: the retry waits, and cancels must not wait with it.
    refused = script("echo", refuse_on=["a"], retry_ms=30_000)
    async with AsyncClient(fakes["a"].target, retry=FAST) as client:
        by_handle = await client.submit(refused)
        by_id = await client.submit(refused)
        await asyncio.sleep(0.1)
        await by_handle.cancel("changed my mind")
        assert (await client.cancel(by_id.task_id, "by id")).previous_state is TaskState.QUEUED
        for handle, reason in ((by_handle, "changed my mind"), (by_id, "by id")):
            with pytest.raises(TaskCancelled, match=reason) as info:
                await asyncio.wait_for(handle.result(), 5)
            assert not info.value.was_running
            assert fakes["a"].executor.received.count(handle.task_id) == 1  # never resent
        waiting = await client.submit(refused)
        await asyncio.sleep(0.1)
    with pytest.raises(ClientClosed):  # closing the client ends a waiting retry too
        await asyncio.wait_for(waiting.result(), 5)


async def test_an_abandoned_batch_does_not_resend_its_waiting_tasks(fakes):
    run = uuid.uuid4().hex[:8]
    async with AsyncClient(fakes["a"].target, retry=FAST) as client:
        with pytest.raises(TaskFailed, match="first"):
            await client.batch(
                [
                    TaskSpec(script("echo", refuse_times=1, retry_ms=300), task_id=f"w-{run}"),
                    TaskSpec(script("throw", message="first", sleep=0.05)),
                ]
            )
        await asyncio.sleep(0.5)
    assert fakes["a"].executor.received.count(f"w-{run}") == 1


def test_cli_empty_target_is_a_usage_error(capsys):
    assert main(["stats", "--target", " , "]) == EXIT_USAGE
    assert "no target" in capsys.readouterr().err


def ranked(targets: list[str], source: str, value: Any) -> list[str]:
    """The replicas in the rendezvous order of the task `run(source, input=value)`."""
    task = prepare(TaskSpec(source, input=value), default_timeout=None).task
    return [targets[i] for i in rendezvous_order(action_key(task), targets)]


async def test_a_repeated_hermetic_task_goes_to_the_replica_its_digest_ranks_first(client, fakes):
    targets = [f.target for f in fakes.values()]
    handles = [await client.submit(script("echo"), input="same") for _ in range(6)]
    assert [(await h.result()).value for h in handles] == ["same"] * 6
    assert {h.replica for h in handles} == {ranked(targets, script("echo"), "same")[0]}
    # Distinct tasks spread over every replica.
    spread = [await client.submit(script("echo"), input=n) for n in range(30)]
    assert [(await h.result()).value for h in spread] == list(range(30))
    assert {h.replica for h in spread} == set(targets)


async def test_a_routed_task_refused_by_its_replica_goes_to_the_next_in_rendezvous_order(
    client, fakes
):
    targets = [f.target for f in fakes.values()]
    names = by_target(fakes)
    source = script("echo", refuse_on=["b"], retry_ms=30_000)
    # The first input whose task ranks b first: b refuses it, the second choice runs it.
    n = next(n for n in range(200) if names[ranked(targets, source, n)[0]] == "b")
    handle = await client.submit(source, input=n)
    assert (await handle.result()).value == n
    assert handle.attempts == 2 and handle.replica == ranked(targets, source, n)[1]
