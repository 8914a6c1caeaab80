"""#12 item 2: a task's logs are bounded in lines as well as bytes, travel coalesced,
and a Submit stream whose client does not read holds back its tasks instead of
buffering their events without bound.
"""

from __future__ import annotations

import asyncio
import time

import grpc

from zako_sdk import AsyncClient
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc

TERMINAL = {"completed", "failed", "cancelled", "rejected"}
FLOOD = "for (let i = 0; i < (1 << 20); i++) console.log('x'); module.exports = 1"


async def test_a_million_lines_are_a_bounded_number_of_events(zako_server):
    limit = zako_server.settings.max_log_lines
    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)

        async def requests():
            yield pb.SubmitRequest(task=pb.Task(id="flood", source=FLOOD))

        log_events, lines = 0, []
        async for event in stub.Submit(requests()):
            if event.WhichOneof("event") == "log":
                log_events += 1
                lines += [event.log, *event.log.more]
            if event.WhichOneof("event") in TERMINAL:
                assert event.completed.result.value_json == "1"
                break
    assert len(lines) == limit + 1  # the kept lines, then the marker
    assert all(line.message == "x" for line in lines[:-1])
    assert lines[-1].level == pb.LOG_LEVEL_WARN
    assert f"{(1 << 20) - limit} lines dropped" in lines[-1].message
    assert log_events <= limit // 1000 + 2  # coalesced: up to 1,000 lines an event


async def test_run_bounds_its_logs_and_counts_the_dropped(zako_server):
    limit = zako_server.settings.max_log_lines
    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        response = await pb_grpc.ExecutorStub(channel).Run(
            pb.RunRequest(task=pb.Task(source=FLOOD))
        )
    assert response.completed.result.value_json == "1"
    assert len(response.logs) == limit + 1
    assert response.logs_dropped == (1 << 20) - limit
    assert not any(line.more for line in response.logs)


async def test_byte_bound_still_applies_with_its_marker(server_factory):
    server = server_factory(max_log_bytes="1000", max_log_lines="100000")
    async with grpc.aio.insecure_channel(server.target) as channel:
        response = await pb_grpc.ExecutorStub(channel).Run(
            pb.RunRequest(task=pb.Task(source=FLOOD))
        )
    kept = response.logs[:-1]
    assert len(kept) == 1000 and response.logs_dropped == (1 << 20) - 1000
    assert "lines dropped" in response.logs[-1].message


async def test_the_sdk_sees_every_coalesced_line(zako_server):
    seen = []
    async with AsyncClient(zako_server.target) as client:
        result = await client.run(
            "for (let i = 0; i < 2500; i++) console.log('n' + i); module.exports = 7",
            on_log=seen.append,
        )
    assert result.value == 7
    assert [line.message for line in seen] == [f"n{i}" for i in range(2500)]


async def test_a_stream_that_is_not_read_holds_its_tasks_back(server_factory):
    """40 tasks of ~0.5 MiB of logs each on a stream whose client reads nothing: once
    its outbox is full the server starts none of them (no lease held, no worker busy)
    and stops reading; reading drains it and every task completes."""
    server = server_factory(stream_outbox_bytes="256KiB", max_workers="2")
    engine, pool = server.server.engine, server.server.pool
    source = "for (let i = 0; i < 5000; i++) console.log('y'.repeat(100)); module.exports = 3"
    count = 40

    async def requests():
        for i in range(count):
            # Each must run (no action-cache join): the held tasks are what is checked.
            task = pb.Task(id=f"t{i}", source=source, cache=pb.CACHE_POLICY_SKIP)
            yield pb.SubmitRequest(task=task)

    async def stalled() -> bool:
        return engine.held > 0 and pool.statistics().busy == 0

    async with grpc.aio.insecure_channel(
        server.target, options=[("grpc.max_receive_message_length", 64 << 20)]
    ) as channel:
        call = pb_grpc.ExecutorStub(channel).Submit(requests())
        deadline = time.monotonic() + 60
        while not server.call(stalled()):
            assert time.monotonic() < deadline, "the stream never held its tasks back"
            await asyncio.sleep(0.1)
        finished_while_stalled = engine.counters.completed
        assert finished_while_stalled < count
        ends = {}
        async for event in call:
            if event.WhichOneof("event") in TERMINAL:
                ends[event.task_id] = event
    assert len(ends) == count
    assert all(e.completed.result.value_json == "3" for e in ends.values())
    assert engine.held == 0
