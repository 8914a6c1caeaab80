"""#12 item 3: one task can never end a stream or the call of another task.

A deeply nested input, an error too large for one message, an unexpected fault while
one task is handled: each becomes that task's own terminal event, and the innocent task
on the same stream still gets its result.
"""

from __future__ import annotations

import grpc
import pytest

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc
from zako_server.server.events import ERROR_TEXT_BYTES, TRUNCATED

TERMINAL = {"completed", "failed", "cancelled", "rejected"}


async def _stream(target: str, tasks: list[pb.Task]) -> dict[str, pb.SubmitResponse]:
    """Submit `tasks` on one stream; each task's terminal event, by id."""
    async with grpc.aio.insecure_channel(
        target,
        options=[("grpc.max_receive_message_length", 256 << 20)],
    ) as channel:
        stub = pb_grpc.ExecutorStub(channel)

        async def requests():
            for task in tasks:
                yield pb.SubmitRequest(task=task)

        ends: dict[str, pb.SubmitResponse] = {}
        async for event in stub.Submit(requests()):
            if event.WhichOneof("event") in TERMINAL:
                ends[event.task_id] = event
        return ends


@pytest.mark.parametrize(
    "nested", ["[" * 100_000, "[" * 3_000 + "]" * 3_000, '{"a":' * 3_000 + "1" + "}" * 3_000]
)
async def test_deep_input_is_rejected_alone_on_a_stream(zako_server, nested):
    ends = await _stream(
        zako_server.target,
        [
            pb.Task(id="deep", source="module.exports = 1", input_json=nested),
            pb.Task(id="fine", source="module.exports = 2"),
        ],
    )
    assert set(ends) == {"deep", "fine"}
    rejected = ends["deep"].rejected
    assert rejected.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert rejected.field == "task.input_json" and "deep" in rejected.message
    assert ends["fine"].completed.result.value_json == "2"


async def test_deep_input_is_invalid_argument_on_run(zako_server):
    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pb_grpc.ExecutorStub(channel).Run(
                pb.RunRequest(task=pb.Task(source="module.exports = 1", input_json="[" * 100_000))
            )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_huge_error_message_is_truncated_and_the_stream_lives(server_factory):
    server = server_factory(max_memory="1GiB")
    huge = pb.Task(
        id="huge",
        source="throw new Error('x'.repeat(40e6))",
        resources=pb.ResourceRequests(memory_bytes=900 << 20),
    )
    ends = await _stream(server.target, [huge, pb.Task(id="fine", source="module.exports = 2")])
    assert set(ends) == {"huge", "fine"}
    error = ends["huge"].failed.error
    assert ends["huge"].failed.reason == pb.FAILURE_REASON_JS_ERROR
    assert error.message.endswith(TRUNCATED.format(bytes=40_000_000 - ERROR_TEXT_BYTES))
    assert len(error.message.encode()) <= ERROR_TEXT_BYTES + 100
    assert len(error.stack.encode()) <= ERROR_TEXT_BYTES + 100
    assert ends["huge"].ByteSize() < server.settings.max_message_bytes
    assert ends["fine"].completed.result.value_json == "2"


async def test_an_unexpected_fault_with_one_task_is_that_task_s_rejection(
    server_factory, monkeypatch
):
    """The last-resort guard: a bug while handling one task (here: validation raising
    something it never should) rejects that task as INTERNAL; the stream goes on."""
    from zako_server.server import service

    real = service.validate

    def flaky(task, *args, **kwargs):
        if task.id == "poison":
            raise LookupError("a bug")
        return real(task, *args, **kwargs)

    monkeypatch.setattr(service, "validate", flaky)
    server = server_factory()
    ends = await _stream(
        server.target,
        [pb.Task(id="poison", source="1"), pb.Task(id="fine", source="module.exports = 2")],
    )
    assert ends["poison"].rejected.code == grpc.StatusCode.INTERNAL.value[0]
    assert ends["fine"].completed.result.value_json == "2"
