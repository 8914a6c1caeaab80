"""#16 in the SDK: tasks that are ready together leave in one TaskBatch message, the
stream asks for EventBatch replies and unpacks them, and `terminal_only` asks for no
progress events; against a server that does not batch, one task per message as before.

The stream's gRPC call is watched (its `write` and `read` wrapped) to see what went over
the wire; the server is a real one over loopback, or the fake of test_streams. (With one
worker, `started` and `completed` events mostly leave one by one: they are ready
together only when the server is busier than its worker.)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.sdk.test_streams import FakeServer, script
from zako_sdk import AsyncClient
from zako_sdk._stream import _SubmitStream
from zako_sdk.pacing import Pace
from zako_sdk.proto.zako.v1 import executor_pb2 as pb


def fresh(source: str = "module.exports = (x) => x + 1") -> str:
    """`source` made new to the server (a comment of its own), so that the task runs and
    has every event rather than being answered from the action cache."""
    return f"{source} // {uuid.uuid4()}"


class Wire:
    """What one Submit call of the SDK wrote and read."""

    def __init__(self, call: Any) -> None:
        self.written: list[pb.SubmitRequest] = []
        self.read: list[Any] = []
        write, read = call.write, call.read

        async def spy_write(request: pb.SubmitRequest) -> None:
            self.written.append(request)
            await write(request)

        async def spy_read() -> Any:
            message = await read()
            self.read.append(message)
            return message

        call.write, call.read = spy_write, spy_read

    def kinds(self) -> list[str]:
        return [request.WhichOneof("kind") for request in self.written]


@pytest.fixture
def wires(monkeypatch: pytest.MonkeyPatch) -> list[Wire]:
    """Every Submit call the SDK opens from now on, watched from its first message."""
    opened: list[Wire] = []
    init = _SubmitStream.__init__

    def watched(self: _SubmitStream, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)  # its reader and writer tasks have not run yet
        opened.append(Wire(self._call))

    monkeypatch.setattr(_SubmitStream, "__init__", watched)
    return opened


async def open_stream(client: AsyncClient, wires: list[Wire]) -> tuple[_SubmitStream, Wire]:
    """Run one task to open the client's stream and wait for its Capabilities probe."""
    assert (await client.run(fresh(), input=0)).value == 1
    (stream,) = client._shared._streams.values()
    await stream._probe
    (wire,) = wires
    wire.written.clear()
    wire.read.clear()
    return stream, wire


@pytest.fixture
async def client(zako_server) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(zako_server.target) as inner:
        yield inner


async def test_tasks_ready_together_leave_as_one_batch_and_events_come_batched(client, wires):
    stream, wire = await open_stream(client, wires)
    assert stream.batching
    count = 30
    results = await asyncio.gather(
        *(client.run(fresh(), input=i, terminal_only=False) for i in range(count))
    )
    assert [r.value for r in results] == [i + 1 for i in range(count)]
    assert all(r.worker_id for r in results)
    # The thirty run() calls of one loop tick leave together (one message, unless the
    # loop lets the writer in between them); their thirty accepted events are ready
    # together too, and come back batched.
    assert set(wire.kinds()) == {"tasks"} and len(wire.written) < count // 2
    assert sum(len(request.tasks.tasks) for request in wire.written) == count
    batches = [m for m in wire.read if m.WhichOneof("event") == "batch"]
    assert batches and len(wire.read) < 3 * count


async def test_terminal_only_runs_get_no_progress_events_and_keep_their_logs(client, wires):
    _, wire = await open_stream(client, wires)
    source = fresh("console.log('hello'); module.exports = 6")
    result = await client.run(source)  # run() asks for the terminal event only
    assert result.value == 6 and [line.message for line in result.logs] == ["hello"]
    assert result.worker_id  # the result names its worker: no started event needed
    handle = await client.submit(fresh(), input=1, terminal_only=True)
    done = await handle
    assert done.value == 2 and done.worker_id and handle.worker_id == done.worker_id
    events = [e for m in wire.read for e in (m.batch.events if m.HasField("batch") else [m])]
    assert [e.WhichOneof("event") for e in events] == ["log", "completed", "completed"]
    # Asked for, the progress events come, and name the same worker as the result.
    wire.read.clear()
    full = await client.run(fresh(), input=1, terminal_only=False)
    events = [e for m in wire.read for e in (m.batch.events if m.HasField("batch") else [m])]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["accepted", "started", "completed"], kinds
    assert full.worker_id == events[1].started.worker_id == events[2].completed.result.worker_id


async def test_a_task_that_fails_in_a_batch_fails_alone(client, wires):
    await open_stream(client, wires)
    outcomes = await asyncio.gather(
        client.run(fresh(), input=1),
        client.run(fresh("throw new Error('mine')")),
        client.run(fresh(), input=2),
        return_exceptions=True,
    )
    assert outcomes[0].value == 2 and outcomes[2].value == 3
    assert "mine" in str(outcomes[1])


async def test_without_the_servers_word_each_task_goes_alone(wires):
    fake = FakeServer()  # a server whose Capabilities says nothing of batching
    try:
        async with AsyncClient(fake.target) as client:
            assert (await client.run(script("echo"), input=0)).value == 0
            (stream,) = client._shared._streams.values()
            await stream._probe
            (wire,) = wires
            wire.written.clear()
            results = await asyncio.gather(
                *(client.run(script("echo"), input=i) for i in range(10))
            )
            assert [r.value for r in results] == list(range(10))
            assert not stream.batching and wire.kinds() == ["task"] * 10
    finally:
        fake.stop()


def test_a_busy_stream_lingers_for_a_small_share_of_a_tasks_time():
    now = [0.0]
    pace = Pace(lambda: now[0])
    assert pace.linger(1000) == 0  # no evidence yet: no waiting
    for _ in range(200):  # a task ends every millisecond
        now[0] += 0.001
        pace.ended()
    assert abs(pace.linger(64) - 0.05 * 64 * 0.001) < 1e-4  # 5% of ~64 ms
    assert pace.linger(1000) == 0.005 and pace.linger(19) == 0


async def test_a_closed_loop_of_callers_sends_its_tasks_in_batches(client, wires):
    """40 callers each running the next task when the last ends (the bench's shape):
    results arrive one by one, yet the writer lets new tasks wait for company."""
    await open_stream(client, wires)
    (wire,) = wires
    count, window = 400, 40
    values: list[int] = []
    numbers = iter(range(count))

    async def caller() -> None:
        for i in numbers:
            values.append((await client.run(fresh(), input=i, terminal_only=True)).value - 1)

    await asyncio.gather(*(caller() for _ in range(window)))
    assert sorted(values) == list(range(count))
    sends = [r for r in wire.written if r.WhichOneof("kind") in ("task", "tasks")]
    tasks = [t for r in sends for t in (r.tasks.tasks if r.HasField("tasks") else [r.task])]
    assert len(tasks) == count and len(sends) <= count * 3 // 4
