"""The real `zako-server` process: banner, health, SIGTERM drain, exit code."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys

import grpc
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2, health_pb2_grpc

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def start_process(*flags: str) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZAKO_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "zako_server", "--listen", "127.0.0.1:0", *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on (127\.0\.0\.1:\d+) with (\d+) V8 worker", line)
    if not match:
        proc.kill()
        raise AssertionError(f"no banner: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc, match.group(1)


def end(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


async def health(stub) -> int:
    reply = await stub.Check(health_pb2.HealthCheckRequest(service="zako.v1.Executor"))
    return reply.status


async def test_banner_health_and_sigterm_lets_running_tasks_finish():
    proc, target = start_process("--max-workers", "1", "--drain-grace", "10")
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            checker = health_pb2_grpc.HealthStub(channel)
            stub = pb_grpc.ExecutorStub(channel)
            assert await health(checker) == SERVING
            busy = "let n = 0; for (let i = 0; i < 3e8; i++) n += i % 3; module.exports = n"
            running = asyncio.ensure_future(
                stub.Run(
                    pb.RunRequest(
                        task=pb.Task(id="long", source=busy, timeout=Duration(seconds=30))
                    )
                )
            )
            for _ in range(500):
                if (await stub.Stats(pb.StatsRequest())).pool.busy:
                    break
                await asyncio.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            for _ in range(250):
                if await health(checker) == NOT_SERVING:
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("health never went NOT_SERVING")
            try:
                await stub.Run(pb.RunRequest(task=pb.Task(source="module.exports = 1")))
                raise AssertionError("a new task was accepted while draining")
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE
            outcome = await asyncio.wait_for(running, 30)
            assert outcome.WhichOneof("outcome") == "completed"
        assert proc.wait(timeout=20) == 0
    finally:
        end(proc)


async def test_sigterm_cancels_tasks_still_running_after_the_grace():
    proc, target = start_process("--max-workers", "1", "--drain-grace", "0.5")
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb_grpc.ExecutorStub(channel)
            events = []

            async def requests():
                yield pb.SubmitRequest(
                    task=pb.Task(
                        id="forever", source="while (true) {}", timeout=Duration(seconds=60)
                    )
                )
                yield pb.SubmitRequest(task=pb.Task(id="queued", source="module.exports = 1"))
                await asyncio.sleep(30)  # keep the stream open, as a real client would

            signalled = False
            async for event in stub.Submit(requests(), timeout=30):
                events.append(event)
                seen = {(e.task_id, e.WhichOneof("event")) for e in events}
                # Signal only once both tasks are in: one running, one accepted and queued.
                if not signalled and {("forever", "started"), ("queued", "accepted")} <= seen:
                    proc.send_signal(signal.SIGTERM)
                    signalled = True
                if (
                    sum(
                        e.WhichOneof("event") in {"completed", "failed", "cancelled", "rejected"}
                        for e in events
                    )
                    == 2
                ):
                    break
        ends = {
            e.task_id: e
            for e in events
            if e.WhichOneof("event") in {"completed", "failed", "cancelled"}
        }
        assert ends["forever"].cancelled.reason == "server shutdown"
        assert ends["forever"].cancelled.was_running
        assert ends["queued"].cancelled.reason == "server shutdown"
        assert proc.wait(timeout=20) == 0
    finally:
        end(proc)
