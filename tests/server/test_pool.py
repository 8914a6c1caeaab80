"""The worker pool through a real server: crash containment, scale-up, reclaim."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import grpc
import psutil
import pytest
from google.protobuf.duration_pb2 import Duration

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc
from zako_server.protocol import StartedEvent
from zako_server.server.heuristics import owns_cpus


async def test_killed_worker_fails_only_its_task_and_is_replaced(server_factory):
    server = server_factory(min_workers=1, max_workers=2)
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        queue: asyncio.Queue = asyncio.Queue()

        async def feed():
            while (item := await queue.get()) is not None:
                yield item

        await queue.put(
            pb.SubmitRequest(
                task=pb.Task(id="victim", source="while (true) {}", timeout=Duration(seconds=60))
            )
        )
        await queue.put(
            pb.SubmitRequest(
                task=pb.Task(
                    id="bystander",
                    source="let n = 0; for (let i = 0; i < 5e7; i++) n++; module.exports = n",
                )
            )
        )
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
                # Each must run (no action-cache join): the backlog is what scales the pool.
                yield pb.SubmitRequest(
                    task=pb.Task(id=f"b{i}", source=busy, cache=pb.CACHE_POLICY_SKIP)
                )

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


async def test_arraybuffer_growth_past_the_rss_bound_kills_the_worker_as_out_of_memory(
    server_factory,
):
    # V8's heap limit does not count ArrayBuffers; the supervisor's RSS bound does.
    server = server_factory(max_workers=1, worker_rss_margin="128MiB")
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        hog = (
            "const keep = []; for (let i = 0; i < 400; i++) {"
            " const b = new Uint8Array(8 << 20); b.fill(i); keep.push(b); }"
            " module.exports = keep.length"
        )
        reply = await stub.Run(
            pb.RunRequest(
                task=pb.Task(
                    source=hog,
                    resources=pb.ResourceRequests(memory_bytes=64 << 20),
                    timeout=Duration(seconds=30),
                )
            ),
            timeout=60,
        )
        assert reply.failed.reason == pb.FAILURE_REASON_OUT_OF_MEMORY, reply
        assert "exceeded its bound" in reply.failed.error.message
        after = await stub.Run(pb.RunRequest(task=pb.Task(source="module.exports = 'ok'")))
        assert after.completed.result.value_json == '"ok"'


async def test_tasks_after_idle_reclaim_to_zero_workers_are_never_dropped(server_factory):
    # The seed system's pool dropped the next job after a long idle period.
    server = server_factory(min_workers=0, max_workers=1, idle_timeout=0.2)
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        for i, pause in enumerate([0.0, 0.5, 0.21, 0.19, 0.8, 0.25]):
            await asyncio.sleep(pause)
            reply = await stub.Run(
                pb.RunRequest(
                    task=pb.Task(source="module.exports = (x) => x * 2", input_json=str(i))
                ),
                timeout=30,
            )
            assert reply.completed.result.value_json == str(i * 2)
        stats = await stub.Stats(pb.StatsRequest())
        assert stats.pool.reclaimed_total >= 2 and stats.tasks.completed == 6


async def test_task_sent_to_an_idle_worker_that_just_died_runs_elsewhere(server_factory):
    server = server_factory(min_workers=1, max_workers=1)
    idle = server.server.pool.workers()[0]
    os.kill(idle.pid, signal.SIGKILL)  # dies idle; the task may race its removal
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        reply = await stub.Run(pb.RunRequest(task=pb.Task(source="module.exports = 1")), timeout=30)
        assert reply.completed.result.value_json == "1"


async def test_broadcast_gc_with_no_live_worker_answers_empty(server_factory):
    server = server_factory(min_workers=0, max_workers=1)
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        reply = await stub.BroadcastGC(pb.BroadcastGCRequest(), timeout=10)
    assert list(reply.workers) == [] and reply.total_freed_bytes == 0


def test_dispatch_to_a_worker_dead_before_the_pool_noticed_is_redone(server_factory):
    """Deterministic version of the race: the worker dies, and before the event loop
    can notice, a task is dispatched to it. It must run on a replacement."""
    from zako_server.server.validation import validate

    server = server_factory(min_workers=1, max_workers=1)
    pool = server.server.pool
    job = validate(pb.Task(id="raced", source="module.exports = 'ran'"), server.settings)
    started: list[str] = []  # the workers that said they began it

    async def race():
        victim = pool.workers()[0]
        os.kill(victim.pid, signal.SIGKILL)
        time.sleep(0.2)  # noqa: ASYNC251 - blocks the loop on purpose: the pool cannot see the death yet
        result = await pool.run(
            job.frame,
            lambda event, worker: (
                started.append(worker.id) if isinstance(event, StartedEvent) else None
            ),
        )
        return victim, result

    victim, result = server.call(race())
    assert result.ok and result.value == '"ran"', result
    assert len(started) == 1 and started[0] != victim.id


async def test_a_tenants_tasks_return_to_the_worker_warm_for_it(server_factory):
    """Longest-idle-first alone would alternate workers (A, A, B, A -> w1, w2, w1, w2);
    affinity keeps A on its warm worker and sends B to the cold one."""
    server = server_factory(min_workers=2, max_workers=2)
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        for _ in range(50):  # both warm workers up, so neither is started mid-test
            if (await stub.Stats(pb.StatsRequest())).pool.idle == 2:
                break
            await asyncio.sleep(0.1)

        async def worker_of(tenant: str) -> str:
            # Run, not answered from the action cache: its worker is what is checked.
            task = pb.Task(source="module.exports = 1", cache=pb.CACHE_POLICY_SKIP)
            requests = [pb.SubmitRequest(task=task)]
            worker = ""
            async for event in stub.Submit(
                iter(requests), timeout=30, metadata=[("x-zako-tenant", tenant)]
            ):
                if event.WhichOneof("event") == "started":
                    worker = event.started.worker_id
                assert event.WhichOneof("event") != "failed"
            return worker

        placed = [(tenant, await worker_of(tenant)) for tenant in ("a", "a", "b", "a", "b")]
    a_workers = {w for t, w in placed if t == "a"}
    b_workers = {w for t, w in placed if t == "b"}
    assert len(a_workers) == 1 and len(b_workers) == 1 and a_workers != b_workers, placed


def _affinities(pid: int) -> set[frozenset[int]]:
    """The CPU masks of every thread of process `pid`."""
    return {frozenset(os.sched_getaffinity(int(tid))) for tid in os.listdir(f"/proc/{pid}/task")}


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux CPU affinity")
def test_workers_are_pinned_one_cpu_each_spread_over_the_allowed_ones(server_factory):
    """Every thread of a worker (its loop's and its isolates') runs on one CPU, and two
    workers take two CPUs when the server has them (worker_set.py says why)."""
    allowed = os.sched_getaffinity(0)
    server = server_factory(min_workers=2, max_workers=2)
    workers = server.server.pool.workers()
    masks = [_affinities(w.pid) for w in workers]
    machine = server.settings.machine
    if len(allowed) < 2 or machine is None or not owns_cpus(machine):
        # Nothing to spread over, or CPUs shared with other containers under a quota.
        assert all(m == {frozenset(allowed)} for m in masks)
        return
    cpus = [next(iter(m)) for m in masks]
    assert all(len(m) == 1 for m in masks), masks  # all threads of a worker: one mask
    assert all(len(c) == 1 and c <= allowed for c in cpus)
    assert cpus[0] != cpus[1]
    unpinned = server_factory(min_workers=1, max_workers=1, worker_pinning=False)
    assert _affinities(unpinned.server.pool.workers()[0].pid) == {frozenset(allowed)}


@pytest.mark.parametrize("brief_wait", [0.0, 0.5])
async def test_worker_brief_wait_reaches_the_workers_and_tasks_run_and_time_out_either_way(
    server_factory, brief_wait
):
    # 0 sends every eval through the loop (mini-racer's eval_cancelable); 0.5 lets a
    # worker's loop wait up to half a second for one: a task that loops forever must still
    # be stopped at its deadline, and a brief one answer.
    server = server_factory(min_workers=1, max_workers=1, worker_brief_wait=brief_wait)
    worker = server.server.pool.workers()[0]
    argv = psutil.Process(worker.pid).cmdline()
    assert argv[argv.index("--brief-wait") + 1] == repr(brief_wait)
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        spin = await stub.Run(
            pb.RunRequest(
                task=pb.Task(source="while (true) {}", timeout=Duration(nanos=300_000_000))
            )
        )
        done = await stub.Run(
            pb.RunRequest(task=pb.Task(source="module.exports = (x) => x * 6", input_json="7"))
        )
    assert spin.WhichOneof("outcome") == "failed"
    assert spin.failed.reason == pb.FAILURE_REASON_TIMEOUT
    assert done.completed.result.value_json == "42"
