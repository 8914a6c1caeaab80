"""#12 items 7 and 9: task ids are per tenant, garbage frames are INVALID_ARGUMENT, and
unary Run's INVALID_ARGUMENT carries a google.rpc.BadRequest naming the field.

Real servers over loopback, tenants from bearer tokens (auth on) or the x-zako-tenant
header (auth off).
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc

ADMIN = "admin-token-0123456789"
ACME = "acme-client-token-0123"
BETA = "beta-client-token-0123"
TOKENS = f"{ADMIN}:ops:admin,{ACME}:acme:client,{BETA}:beta:client"
TERMINAL = {"completed", "failed", "cancelled", "rejected"}
LOOP = "while (true) {}"


def as_(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
def auth_server(server_factory):
    return server_factory(auth_tokens=TOKENS, max_workers=2)


async def _until_busy(stub, n: int) -> None:
    for _ in range(500):
        stats = await stub.Stats(pb.StatsRequest(), metadata=as_(ADMIN))
        if stats.pool.busy >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the tasks never started")


def _loop_task(task_id: str) -> pb.RunRequest:
    return pb.RunRequest(task=pb.Task(id=task_id, source=LOOP, timeout=Duration(seconds=30)))


async def test_ids_are_per_tenant_another_tenants_live_id_is_not_found_and_reusable(
    auth_server,
):
    async with grpc.aio.insecure_channel(auth_server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        acme = asyncio.ensure_future(stub.Run(_loop_task("shared"), metadata=as_(ACME)))
        await _until_busy(stub, 1)
        # Before: PERMISSION_DENIED, which told beta that acme has a task "shared".
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Cancel(pb.CancelRequest(task_id="shared"), metadata=as_(BETA))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        # Before: ALREADY_EXISTS. Beta's own "shared" runs beside acme's.
        beta = asyncio.ensure_future(stub.Run(_loop_task("shared"), metadata=as_(BETA)))
        await _until_busy(stub, 2)
        reply = await stub.Cancel(pb.CancelRequest(task_id="shared"), metadata=as_(BETA))
        assert reply.previous_state == pb.TASK_STATE_RUNNING
        assert (await beta).WhichOneof("outcome") == "cancelled"
        assert not acme.done(), acme.result()  # beta's cancel reached beta's task only
        # The admin role cancels by id across tenants when only one has it live.
        await stub.Cancel(pb.CancelRequest(task_id="shared"), metadata=as_(ADMIN))
        assert (await acme).WhichOneof("outcome") == "cancelled"


async def test_the_same_tenant_still_gets_already_exists_without_a_second_end(zako_server):
    busy = "const s = Date.now(); while (Date.now() - s < 300) {} module.exports = 1"

    async def requests():
        for source in (busy, "module.exports = 2"):
            yield pb.SubmitRequest(
                task=pb.Task(
                    id="dup", source=source, context=pb.CONTEXT_KIND_CONFIG, system_access=True
                )
            )

    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        events = [e async for e in pb_grpc.ExecutorStub(channel).Submit(requests(), timeout=30)]
    ends = [e for e in events if e.WhichOneof("event") in TERMINAL]
    # Before: the rejection carried "dup", so "dup" had two terminal events.
    assert [e.task_id for e in ends if e.task_id == "dup"] == ["dup"]
    (duplicate,) = [e for e in ends if e.WhichOneof("event") == "rejected"]
    assert duplicate.task_id == "" and duplicate.rejected.field == "task.id"
    assert duplicate.rejected.code == grpc.StatusCode.ALREADY_EXISTS.value[0]


def _raw(channel: grpc.aio.Channel, method: str, streaming: bool = False):
    kind = channel.stream_stream if streaming else channel.unary_unary
    return kind(
        f"/zako.v1.Executor/{method}",
        request_serializer=lambda data: data,
        response_deserializer=pb.SubmitResponse.FromString if streaming else (lambda b: b),
    )


GARBAGE = b"\xff\xff\xff\xff"


@pytest.mark.parametrize("method", ["Run", "Cancel", "Stats", "Capabilities", "BroadcastGC"])
async def test_an_undecodable_request_is_invalid_argument_not_unknown(zako_server, method):
    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _raw(channel, method)(GARBAGE, timeout=20)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid zako.v1." in caught.value.details()


async def test_an_undecodable_frame_on_a_stream_is_rejected_alone(zako_server):
    fine = pb.SubmitRequest(task=pb.Task(id="fine", source="module.exports = 2"))

    async def requests():
        yield GARBAGE
        yield fine.SerializeToString()

    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        call = _raw(channel, "Submit", streaming=True)(requests(), timeout=30)
        events = [e async for e in call]
        assert await call.code() == grpc.StatusCode.OK
    ends = {e.task_id: e for e in events if e.WhichOneof("event") in TERMINAL}
    assert ends[""].rejected.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "not a valid zako.v1.SubmitRequest" in ends[""].rejected.message
    assert ends["fine"].completed.result.value_json == "2"


async def test_runs_invalid_argument_carries_a_bad_request_naming_the_field(zako_server):
    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pb_grpc.ExecutorStub(channel).Run(
                pb.RunRequest(task=pb.Task(source="1", input_json="NaN")), timeout=20
            )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(caught.value)
    assert status is not None
    violations = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend(bad.field_violations)
    assert [v.field for v in violations] == ["task.input_json"]
    assert "NaN is not JSON" in violations[0].description


async def test_a_frame_over_the_message_limit_is_that_tasks_rejection_counted(server_factory):
    server = server_factory(max_message_bytes=str(256 << 10))
    big = pb.SubmitRequest(task=pb.Task(id="big", source="module.exports = 1" + " " * 300_000))
    fine = pb.SubmitRequest(task=pb.Task(id="fine", source="module.exports = 2"))

    async def requests():
        yield big.SerializeToString()
        yield fine.SerializeToString()

    async with grpc.aio.insecure_channel(server.target) as channel:
        call = _raw(channel, "Submit", streaming=True)(requests(), timeout=30)
        events = [e async for e in call]
        assert await call.code() == grpc.StatusCode.OK  # before: the stream died
        stats = await pb_grpc.ExecutorStub(channel).Stats(pb.StatsRequest())
    ends = {e.task_id: e for e in events if e.WhichOneof("event") in TERMINAL}
    rejected = ends["big"].rejected
    assert rejected.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert rejected.quota == "max_message_bytes" and not rejected.HasField("retry_after")
    assert f"message limit of {256 << 10} bytes" in rejected.message
    assert ends["fine"].completed.result.value_json == "2", ends["fine"]
    assert stats.tasks.rejected_by_reason["RESOURCE_EXHAUSTED"] == 1


async def test_a_duplicate_of_another_streams_task_keeps_its_id(zako_server):
    busy = "const s = Date.now(); while (Date.now() - s < 500) {} module.exports = 1"
    first = pb.Task(id="twice", source=busy, context=pb.CONTEXT_KIND_CONFIG, system_access=True)

    async def one(task: pb.Task):
        async def requests():
            yield pb.SubmitRequest(task=task)

        async with grpc.aio.insecure_channel(zako_server.target) as channel:
            return [e async for e in pb_grpc.ExecutorStub(channel).Submit(requests(), timeout=30)]

    running = asyncio.ensure_future(one(first))
    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        await _until_busy(pb_grpc.ExecutorStub(channel), 1)
    second = await one(pb.Task(id="twice", source="module.exports = 2"))
    # That stream never saw the live task: its rejection is the id's one terminal event.
    assert [(e.task_id, e.WhichOneof("event")) for e in second] == [("twice", "rejected")]
    assert second[0].rejected.code == grpc.StatusCode.ALREADY_EXISTS.value[0]
    ends = [e for e in await running if e.WhichOneof("event") in TERMINAL]
    assert [e.WhichOneof("event") for e in ends] == ["completed"]
