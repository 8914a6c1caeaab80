"""#12 item 4: a hung peer, worker or client, holds nothing for long.

A worker answers heartbeats idle and busy (task code runs in V8, off its loop); a
stopped one is replaced, its task run elsewhere if it never began, or ended
WORKER_LOST if it had. A stopped client's connection fails the server's keepalive
pings, which cancels its stream and so its tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time

import grpc

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc
from zako_server.server.app import keepalive_options
from zako_server.server.settings import Settings

TERMINAL = {"completed", "failed", "cancelled", "rejected"}
FAST_HEARTBEAT = {"worker_heartbeat_interval": "0.2", "worker_heartbeat_timeout": "2.5"}


async def _events(target: str, task: pb.Task, on_started=None) -> list[pb.SubmitResponse]:
    async with grpc.aio.insecure_channel(target) as channel:
        events = []

        async def requests():
            yield pb.SubmitRequest(task=task)

        async for event in pb_grpc.ExecutorStub(channel).Submit(requests()):
            events.append(event)
            if event.WhichOneof("event") == "started" and on_started is not None:
                on_started(event)
            if event.WhichOneof("event") in TERMINAL:
                return events
    raise AssertionError("the stream ended without a terminal event")


def _resume(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)


async def test_a_stopped_idle_worker_is_replaced_and_its_task_runs_elsewhere(server_factory):
    server = server_factory(min_workers="1", max_workers="1", **FAST_HEARTBEAT)
    (stopped,) = server.server.pool.workers()
    os.kill(stopped.pid, signal.SIGSTOP)
    try:
        events = await _events(
            server.target, pb.Task(source="module.exports = 5", timeout=_seconds(10))
        )
    finally:
        _resume(stopped.pid)
    end = events[-1]
    assert end.completed.result.value_json == "5", end
    (started,) = [e for e in events if e.WhichOneof("event") == "started"]
    assert started.started.worker_id != stopped.id
    assert not stopped.alive


async def test_a_stopped_busy_worker_loses_its_task_as_worker_lost(server_factory):
    server = server_factory(min_workers="1", max_workers="1", **FAST_HEARTBEAT)
    pids = []

    def stop(event: pb.SubmitResponse) -> None:
        pids.append(event.started.worker_pid)
        os.kill(event.started.worker_pid, signal.SIGSTOP)

    try:
        events = await _events(
            server.target,
            pb.Task(source="while (true) {}", timeout=_seconds(30)),
            on_started=stop,
        )
    finally:
        for pid in pids:
            _resume(pid)
    failed = events[-1].failed
    assert failed.reason == pb.FAILURE_REASON_WORKER_LOST, events[-1]
    assert "heartbeat" in failed.error.message
    # The pool replaced it: the next task runs.
    again = await _events(server.target, pb.Task(source="module.exports = 1"))
    assert again[-1].completed.result.value_json == "1"


async def test_a_busy_worker_keeps_answering_heartbeats(server_factory):
    """A task spinning longer than the heartbeat timeout is not mistaken for a hung
    worker: it ends by its own timeout, in the same worker."""
    server = server_factory(min_workers="1", max_workers="1", **FAST_HEARTBEAT)
    (worker,) = server.server.pool.workers()
    events = await _events(server.target, pb.Task(source="while (true) {}", timeout=_seconds(5)))
    assert events[-1].failed.reason == pb.FAILURE_REASON_TIMEOUT, events[-1]
    assert worker.alive and server.server.pool.workers() == [worker]


def test_keepalive_options_follow_the_settings():
    options = dict(keepalive_options(Settings(keepalive_time=1.5, keepalive_timeout=0.5)))
    assert options["grpc.keepalive_time_ms"] == 1500
    assert options["grpc.keepalive_timeout_ms"] == 500
    assert options["grpc.http2.max_pings_without_data"] == 0
    assert options["grpc.http2.ping_timeout_ms"] == 500


CLIENT = textwrap.dedent(
    """
    import sys, grpc
    from zako_sdk.proto.zako.v1 import executor_pb2 as pb
    from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc
    from google.protobuf.duration_pb2 import Duration

    def requests():
        yield pb.SubmitRequest(task=pb.Task(id="held", source="while (true) {}",
                                            timeout=Duration(seconds=120)))
        import threading
        threading.Event().wait()  # keep the stream open

    channel = grpc.insecure_channel(sys.argv[1])
    for event in pb_grpc.ExecutorStub(channel).Submit(requests()):
        if event.WhichOneof("event") == "started":
            print("started", flush=True)
    """
)


async def test_a_stopped_client_s_tasks_are_cancelled_by_keepalive(server_factory):
    server = server_factory(keepalive_time="1", keepalive_timeout="1")
    engine = server.server.engine
    client = subprocess.Popen(  # noqa: ASYNC220 (started once, read in a thread)
        [sys.executable, "-c", CLIENT, server.target], stdout=subprocess.PIPE, text=True
    )
    try:
        assert client.stdout is not None
        assert (await asyncio.to_thread(client.stdout.readline)).strip() == "started"
        os.kill(client.pid, signal.SIGSTOP)
        # Bounded wait for the outcome (the task's own timeout is 120 s).
        deadline = time.monotonic() + 30
        while engine.live_count():
            assert time.monotonic() < deadline, "the stopped client's task still runs"
            await asyncio.sleep(0.2)
        assert engine.counters.cancelled >= 1
    finally:
        client.kill()
        _resume(client.pid)
        client.wait(10)
        if client.stdout is not None:
            client.stdout.close()


def _seconds(value: float):
    from google.protobuf.duration_pb2 import Duration

    return Duration(seconds=int(value))


def test_a_heartbeat_timeout_within_one_interval_is_refused():
    import pytest

    with pytest.raises(ValueError, match="worker_heartbeat_timeout"):
        Settings(worker_heartbeat_interval=2.0, worker_heartbeat_timeout=1.0)
