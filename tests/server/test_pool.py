"""The worker pool through a real server: crash containment, scale-up, reclaim."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import grpc
from google.protobuf.duration_pb2 import Duration

from zako_sdk._proto.zako.v1 import executor_pb2 as pb
from zako_sdk._proto.zako.v1 import executor_pb2_grpc as pb_grpc


async def test_killed_worker_fails_only_its_task_and_is_replaced(server_factory):
    server = server_factory(min_workers=1, max_workers=2)
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        queue: asyncio.Queue = asyncio.Queue()

        async def feed():
            while (item := await queue.get()) is not None:
                yield item

        await queue.put(pb.SubmitRequest(task=pb.Task(
            id="victim", source="while (true) {}", timeout=Duration(seconds=60))))
        await queue.put(pb.SubmitRequest(task=pb.Task(
            id="bystander", source="let n = 0; for (let i = 0; i < 5e7; i++) n++;"
                                   " module.exports = n")))
        ends: dict[str, pb.SubmitResponse] = {}
        killed_at = None
        async for event in stub.Submit(feed(), timeout=60):
            kind = event.WhichOneof("event")
            if kind == "started" and event.task_id == "victim":
                os.kill(event.started.worker_pid, signal.SIGKILL)
                killed_at = time.monotonic()
            if kind in {"completed", "failed", "cancelled"}:
                ends[event.task_id] = event
                if event.task_id == "victim":
                    assert time.monotonic() - killed_at < 1.0
                if len(ends) == 2:
                    await queue.put(None)
        assert ends["victim"].failed.reason == pb.FAILURE_REASON_WORKER_LOST
        assert "killed by signal 9" in ends["victim"].failed.error.message
        assert ends["bystander"].completed.result.value_json == "50000000"
        reply = await stub.Run(pb.RunRequest(task=pb.Task(source="module.exports = 'after'")))
        assert reply.completed.result.value_json == '"after"'
        stats = await stub.Stats(pb.StatsRequest())
        assert stats.pool.crashed_total == 1
        assert stats.pool.live >= 1


async def test_pool_scales_up_to_max_under_backlog_and_reclaims_idle(server_factory):
    server = server_factory(min_workers=1, max_workers=2, idle_timeout=0.5)
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        busy = "let n = 0; for (let i = 0; i < 2e8; i++) n++; module.exports = n"

        async def requests():
            for i in range(6):
                yield pb.SubmitRequest(task=pb.Task(id=f"b{i}", source=busy))

        workers, completed = set(), 0
        async for event in stub.Submit(requests(), timeout=60):
            if event.WhichOneof("event") == "started":
                workers.add(event.started.worker_id)
            completed += event.WhichOneof("event") == "completed"
        assert completed == 6
        assert len(workers) == 2, workers  # the backlog brought up a second worker
        stats = await stub.Stats(pb.StatsRequest())
        assert stats.pool.started_total == 2 and stats.pool.live == 2
        deadline = time.monotonic() + 10
        while (stats := await stub.Stats(pb.StatsRequest())).pool.live > 1:
            assert time.monotonic() < deadline, "idle worker never reclaimed"
            await asyncio.sleep(0.1)
        assert stats.pool.reclaimed_total == 1 and stats.pool.crashed_total == 0
