"""The watch over running tasks (watchdog.py): the backstop and the RSS bound kill a
worker, and the one timer behind both ticks only while some worker runs a task.

The RSS bound's own test is test_pool.py's ArrayBuffer one."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import grpc
from google.protobuf.duration_pb2 import Duration

from tests.server.test_hardening_peers import _events, _resume
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc
from zako_server.server.watchdog import RSS_POLL_S, running


async def test_a_worker_that_lets_its_task_outlive_the_timeout_is_killed_by_the_backstop(
    server_factory,
):
    # A stopped worker cannot stop its task; with heartbeats far slower than the
    # backstop (timeout + cancel grace + 2 s), only the backstop ends it.
    server = server_factory(
        max_workers=1,
        cancel_grace="0.2",
        worker_heartbeat_interval="20",
        worker_heartbeat_timeout="60",
    )
    stopped: list[tuple[int, float]] = []  # (pid, when)

    def stop(event: pb.SubmitResponse) -> None:
        os.kill(event.started.worker_pid, signal.SIGSTOP)
        stopped.append((event.started.worker_pid, time.monotonic()))

    try:
        task = pb.Task(source="while (true) {}", timeout=Duration(nanos=300_000_000))
        events = await asyncio.wait_for(_events(server.target, task, on_started=stop), 30)
        took = time.monotonic() - stopped[0][1]
        end = events[-1]
        assert end.failed.reason == pb.FAILURE_REASON_TIMEOUT, end
        assert "its worker did not stop it" in end.failed.error.message
        assert 2.4 <= took < 10, took  # 0.3 + 0.2 + 2.0, plus at most a tick or so
        async with grpc.aio.insecure_channel(server.target) as channel:
            reply = await pb_grpc.ExecutorStub(channel).Run(
                pb.RunRequest(task=pb.Task(source="module.exports = 'replaced'")), timeout=30
            )
        assert reply.completed.result.value_json == '"replaced"'
    finally:
        for pid, _ in stopped:
            _resume(pid)


async def test_the_watch_ticks_while_a_task_runs_and_stops_after(server_factory):
    server = server_factory(max_workers=1)
    watchdog = server.server.pool._watchdog
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        call = stub.Run(
            pb.RunRequest(
                task=pb.Task(
                    source="let n = 0; for (let i = 0; i < 3e8; i++) n++; module.exports = n",
                    cache=pb.CACHE_POLICY_SKIP,
                )
            ),
            timeout=30,
        )
        seen_ticking = False
        deadline = time.monotonic() + 10
        while not call.done() and time.monotonic() < deadline:
            seen_ticking |= watchdog._timer is not None
            await asyncio.sleep(0.02)
        reply = await call
        assert reply.HasField("completed"), reply
        assert seen_ticking
        await asyncio.sleep(4 * RSS_POLL_S)
        assert watchdog._timer is None  # nothing runs: no tick is armed


class _Future:
    def __init__(self, done: bool) -> None:
        self._done = done

    def done(self) -> bool:
        return self._done


class _Slot:
    def __init__(self, began: bool, done: bool) -> None:
        self.began = began
        self.done = _Future(done)


class _Worker:
    def __init__(self, *slots: _Slot) -> None:
        self.slots = list(slots)


def test_the_running_task_is_the_first_begun_and_unfinished_slot():
    ended, current, queued = _Slot(True, True), _Slot(True, False), _Slot(False, False)
    assert running(_Worker(ended, current, queued)) is current  # type: ignore[arg-type]
    assert running(_Worker(queued)) is None  # type: ignore[arg-type]
    assert running(_Worker(ended)) is None  # type: ignore[arg-type]
    assert running(_Worker()) is None  # type: ignore[arg-type]
