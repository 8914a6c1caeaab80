"""#16, the wire of a Submit stream: several tasks in one request (TaskBatch), several
events in one response (EventBatch, only when the client asked for it) and tasks that
want only their terminal event (Task.terminal_only). A real server over loopback.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterable

import grpc

from zako_sdk.pacing import Pace
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc

TERMINAL = {"completed", "failed", "cancelled", "rejected"}
OPTIONS = pb.SubmitRequest(options=pb.StreamOptions(batch_events=True))


def batch_of(tasks: Iterable[pb.Task]) -> pb.SubmitRequest:
    return pb.SubmitRequest(tasks=pb.TaskBatch(tasks=list(tasks)))


def unpack(message: pb.SubmitResponse) -> list[pb.SubmitResponse]:
    """The events of one response: itself, or the events of its batch."""
    if message.WhichOneof("event") != "batch":
        return [message]
    assert not message.task_id and not message.HasField("time")  # an empty envelope
    assert all(e.WhichOneof("event") != "batch" for e in message.batch.events)  # not nested
    return list(message.batch.events)


async def exchange(
    target: str, requests: list[pb.SubmitRequest], receive_limit: int = 64 << 20
) -> list[pb.SubmitResponse]:
    """Send `requests` on one stream, then read every response until the server ends it."""

    async def source() -> AsyncIterator[pb.SubmitRequest]:
        for request in requests:
            yield request

    async with grpc.aio.insecure_channel(
        target, options=[("grpc.max_receive_message_length", receive_limit)]
    ) as channel:
        return [message async for message in pb_grpc.ExecutorStub(channel).Submit(source())]


def by_task(messages: list[pb.SubmitResponse]) -> dict[str, list[str]]:
    """Each task's event kinds, in the order they arrived."""
    kinds: dict[str, list[str]] = {}
    for message in messages:
        for event in unpack(message):
            kinds.setdefault(event.task_id, []).append(event.WhichOneof("event"))
    return kinds


def task(task_id: str, source: str = "module.exports = (x) => x + 1", **fields) -> pb.Task:
    """A task whose source is new to the server (a comment of its own), so that it runs
    and has every event rather than being answered from the action cache."""
    return pb.Task(id=task_id, source=f"{source} // {uuid.uuid4()}", input_json="1", **fields)


async def test_the_server_says_it_batches(zako_server):
    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        caps = await pb_grpc.ExecutorStub(channel).Capabilities(pb.CapabilitiesRequest())
    assert caps.submit_batching


async def test_each_task_of_a_batch_has_its_own_events_and_a_bad_one_is_rejected_alone(
    zako_server,
):
    tasks = [task("a"), task("bad", context=99), task("b"), task("a")]  # and a duplicate id
    messages = await exchange(zako_server.target, [batch_of(tasks), batch_of([task("c")])])
    # No options were sent: an old-style client never receives a batch.
    assert all(m.WhichOneof("event") != "batch" for m in messages)
    kinds = by_task(messages)
    for task_id in ("a", "b", "c"):
        assert kinds[task_id] == ["accepted", "started", "completed"], task_id
    assert kinds["bad"] == ["rejected"]
    assert kinds[""] == ["rejected"]  # the second "a", while the first is live
    bad = next(m for m in messages if m.task_id == "bad").rejected
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and bad.field == "task.context"
    done = [m for m in messages if m.WhichOneof("event") == "completed"]
    assert [m.completed.result.value_json for m in done] == ["2", "2", "2"]


async def test_ready_events_come_batched_only_after_the_client_asks(zako_server):
    count = 20
    messages = await exchange(
        zako_server.target, [OPTIONS, batch_of(task(f"t{i}") for i in range(count))]
    )
    # Twenty accepted events are ready together, as the request is handled at once.
    assert any(m.WhichOneof("event") == "batch" for m in messages)
    assert len(messages) < 3 * count
    kinds = by_task(messages)
    assert sorted(kinds) == sorted(f"t{i}" for i in range(count))
    assert all(k == ["accepted", "started", "completed"] for k in kinds.values())


async def test_terminal_only_tasks_get_their_terminal_event_and_their_logs(zako_server):
    quiet = "console.log('hi'); module.exports = 5"
    messages = await exchange(
        zako_server.target,
        [
            batch_of(
                [
                    task("quiet", quiet, terminal_only=True),
                    task("loud", quiet),
                    task("refused", terminal_only=True, context=99),
                ]
            ),
            pb.SubmitRequest(task=task("alone", terminal_only=True)),
        ],
    )
    kinds = by_task(messages)
    assert kinds["quiet"] == ["log", "completed"]
    assert kinds["loud"] == ["accepted", "started", "log", "completed"]
    assert kinds["refused"] == ["rejected"]  # a rejection is always sent
    assert kinds["alone"] == ["completed"]


async def test_an_oversized_batch_rejects_each_of_its_tasks(server_factory):
    server = server_factory(max_message_bytes="1MiB")
    big = "module.exports = " + repr("x" * 600_000)  # each fits a message, not both
    messages = await exchange(
        server.target,
        [batch_of([task("x1", big), task("x2", big)]), pb.SubmitRequest(task=task("fine"))],
    )
    kinds = by_task(messages)
    assert kinds["x1"] == kinds["x2"] == ["rejected"]
    for message in messages:
        if message.task_id in ("x1", "x2"):
            assert message.rejected.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert kinds["fine"] == ["accepted", "started", "completed"]


async def test_a_batched_stream_that_is_not_read_still_holds_its_tasks_back(server_factory):
    """The #12 backpressure with batches both ways: 40 tasks of ~0.5 MiB of logs in
    TaskBatches of 10, on a stream whose client asked for EventBatch replies and reads
    nothing. The server stalls (no worker busy, tasks held without a lease); reading
    drains it, every task completes, and no batch is larger than a message."""
    server = server_factory(stream_outbox_bytes="256KiB", max_workers="2", max_message_bytes="1MiB")
    engine, pool = server.server.engine, server.server.pool
    source = "for (let i = 0; i < 5000; i++) console.log('y'.repeat(100)); module.exports = 3"
    count = 40

    async def requests() -> AsyncIterator[pb.SubmitRequest]:
        yield OPTIONS
        for first in range(0, count, 10):
            yield batch_of(task(f"t{i}", source) for i in range(first, first + 10))

    async def stalled() -> bool:
        return engine.held > 0 and pool.statistics().busy == 0

    limit = server.settings.max_message_bytes
    async with grpc.aio.insecure_channel(
        server.target, options=[("grpc.max_receive_message_length", limit)]
    ) as channel:
        call = pb_grpc.ExecutorStub(channel).Submit(requests())
        deadline = time.monotonic() + 60
        while not server.call(stalled()):
            assert time.monotonic() < deadline, "the stream never held its tasks back"
            await asyncio.sleep(0.1)
        assert engine.counters.completed < count
        messages = [message async for message in call]
    assert any(m.WhichOneof("event") == "batch" for m in messages)
    assert all(m.ByteSize() <= limit for m in messages)
    ends = [e for m in messages for e in unpack(m) if e.WhichOneof("event") in TERMINAL]
    assert sorted(e.task_id for e in ends) == sorted(f"t{i}" for i in range(count))
    assert all(e.completed.result.value_json == "3" for e in ends)
    assert engine.held == 0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def paced(gap: float, ends: int = 200) -> Pace:
    clock = Clock()
    pace = Pace(clock)
    for _ in range(ends):
        clock.now += gap
        pace.ended()
    return pace


def test_a_busy_stream_lingers_for_a_small_share_of_a_tasks_time():
    assert Pace(Clock()).linger(1000) == 0  # no evidence yet: no waiting
    fast = paced(0.001)  # a task ends every millisecond
    assert abs(fast.linger(64) - 0.05 * 64 * 0.001) < 1e-4  # 5% of ~64 ms
    assert fast.linger(1000) == 0.005  # and never more than 5 ms
    assert fast.linger(19) == 0  # under 20 in flight no event would join: no waiting
    assert paced(0.1).linger(64) == 0  # slow tasks: none would come within 5 ms


async def test_events_of_a_busy_stream_share_messages(zako_server):
    """A closed loop with 40 tasks in flight, terminal events only: with batch_events the
    server lets events wait for company, so fewer messages than tasks come back."""
    count, window = 400, 40
    sent = 0
    queue: asyncio.Queue[pb.SubmitRequest | None] = asyncio.Queue()

    async def requests() -> AsyncIterator[pb.SubmitRequest]:
        while (request := await queue.get()) is not None:
            yield request

    def submit() -> None:
        nonlocal sent
        queue.put_nowait(pb.SubmitRequest(task=task(f"t{sent}", terminal_only=True)))
        sent += 1

    queue.put_nowait(OPTIONS)
    for _ in range(window):
        submit()
    messages, done = 0, 0
    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        async for message in pb_grpc.ExecutorStub(channel).Submit(requests()):
            messages += 1
            for event in unpack(message):
                assert event.completed.result.value_json == "2"
                done += 1
                if sent < count:
                    submit()
            if done == count:
                queue.put_nowait(None)
    assert done == count and messages <= count * 3 // 4  # about 2 events a message here
