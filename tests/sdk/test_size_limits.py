"""#12 item 8: a request over the message limit fails at once, precisely, and once.

Before: the SDK sent it, took gRPC's RESOURCE_EXHAUSTED for a full queue, retried it
three times and raised Overloaded; the server's Stats never counted it. Real servers
with a small message limit, real clients.
"""

from __future__ import annotations

import grpc
import pytest

from zako_sdk import AsyncClient, Client, MessageTooLarge, Overloaded, Retry
from zako_sdk._base import MessageLimit, check_request_size, request_bytes
from zako_sdk._retries import never_ran
from zako_sdk.errors import rejection_error
from zako_sdk.proto.zako.v1 import executor_pb2 as pb

LIMIT = 256 << 10
ECHO = "module.exports = (x) => x.length"


def too_large_rejections(server) -> tuple[int, int]:
    """(rejected RESOURCE_EXHAUSTED, accepted) as the server's Stats count them."""
    with Client(server.target) as client:
        tasks = client.stats().tasks
    return tasks.rejected_by_reason.get("RESOURCE_EXHAUSTED", 0), tasks.accepted


@pytest.fixture
def small(server_factory):
    return server_factory(max_message_bytes=str(LIMIT))


def test_request_bytes_is_the_size_on_the_wire():
    for size in (0, 1, 127, 128, 300_000):
        task = pb.Task(id="t", source="x" * size)
        assert request_bytes(task) == pb.SubmitRequest(task=task).ByteSize()
        assert request_bytes(task) == pb.RunRequest(task=task).ByteSize()


def test_too_large_is_never_retried_and_maps_from_either_refusal():
    server_said = rejection_error(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "over", task_id="t", quota="max_message_bytes"
    )
    grpc_said = rejection_error(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "Received message larger than max (700000 vs. 262144)",
        task_id="t",
    )
    queue_full = rejection_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue is full", task_id="t")
    assert isinstance(server_said, MessageTooLarge) and isinstance(grpc_said, MessageTooLarge)
    assert type(queue_full) is Overloaded
    assert not never_ran(server_said, sent=True) and never_ran(queue_full, sent=True)


async def test_a_task_over_the_servers_limit_fails_before_it_is_sent(small):
    # Over ASK_LIMIT_ABOVE: the client asks the server its limit, then refuses to send.
    async with AsyncClient(small.target, retry=Retry(attempts=4)) as client:
        for run in (client.run, client.run_unary):
            with pytest.raises(MessageTooLarge) as caught:
                await run(ECHO, input="x" * (2 << 20))
            error = caught.value
            assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert error.quota == "max_message_bytes" and error.field == "task"
            assert f"over the server's message limit of {LIMIT} bytes" in error.message
            assert "it was not sent" in error.message
        assert (await client.run(ECHO, input="fits")).value == 4  # the client still works
    assert too_large_rejections(small) == (0, 1)  # nothing oversized reached the server


async def test_below_the_ask_threshold_the_servers_refusal_is_counted_once(small):
    # 400 KiB: over the server's 256 KiB but under 1 MiB, so the client does not ask
    # first; the server reads it (its gRPC limit is twice its own), refuses and counts
    # it; the client raises MessageTooLarge from the refusal and does not retry.
    async with AsyncClient(small.target, retry=Retry(attempts=4)) as client:
        with pytest.raises(MessageTooLarge) as on_stream:
            await client.run(ECHO, input="x" * (400 << 10))
        assert on_stream.value.quota == "max_message_bytes"
        with pytest.raises(MessageTooLarge):
            await client.run_unary(ECHO, input="x" * (400 << 10))
        assert (await client.run(ECHO, input="ok")).value == 2  # the stream survived
    assert too_large_rejections(small) == (2, 1)  # each counted once: no retries


def test_grpcs_own_refusal_past_twice_the_limit_is_too_large_not_overloaded(small):
    with (
        Client(small.target, retry=Retry(attempts=4)) as client,
        pytest.raises(MessageTooLarge) as caught,
    ):
        client.run_unary(ECHO, input="x" * (600 << 10))  # > 2 x 256 KiB, < 1 MiB
    assert "larger than max" in caught.value.message


def test_the_channels_own_send_limit_is_checked_too(zako_server):
    options = [("grpc.max_send_message_length", 4096)]
    with Client(zako_server.target, options=options) as client:
        with pytest.raises(MessageTooLarge) as caught:
            client.run(ECHO, input="x" * 5000)
        assert "grpc.max_send_message_length of 4096 bytes" in caught.value.message
        assert client.run(ECHO, input="x" * 100).value == 100


def test_check_request_size_passes_what_fits():
    task = pb.Task(id="t", source="x" * 100)
    check_request_size(task, (None,))
    with pytest.raises(MessageTooLarge):
        check_request_size(task, (MessageLimit(request_bytes(task) - 1, "a test limit"),))
