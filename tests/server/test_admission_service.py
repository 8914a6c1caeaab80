"""Admission through a real server: capacity from the workers' side, tenants, quotas,
queue deadlines and rich error details."""

from __future__ import annotations

import asyncio
import json

import grpc
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc

# Busy-waits ~150 ms and reports, from inside the worker, when it ran.
TIMED = """module.exports = () => {
  const start = Date.now(); while (Date.now() - start < 150) {}
  return { start, end: Date.now() };
};"""


async def test_granted_cpu_never_exceeds_capacity_seen_from_the_workers(server_factory):
    # Three workers but only 2000 millicores: tasks of 1000 m may run two at a time.
    server = server_factory(min_workers=3, max_workers=3, resources="cpu=2000")
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)

        async def one(i):
            return await stub.Run(
                pb.RunRequest(
                    task=pb.Task(
                        id=f"c{i}",
                        source=TIMED,
                        context=pb.CONTEXT_KIND_CONFIG,
                        system_access=True,
                        resources=pb.ResourceRequests(cpu_millis=1000),
                    )
                ),
                timeout=60,
            )

        replies = await asyncio.gather(*(one(i) for i in range(9)))
    spans = [json.loads(r.completed.result.value_json) for r in replies]
    edges = sorted(
        [(s["start"], 1) for s in spans] + [(s["end"], -1) for s in spans],
        key=lambda e: (e[0], e[1]),
    )
    running = peak = 0
    for _, delta in edges:
        running += delta
        peak = max(peak, running)
    assert peak == 2, spans  # never 3 (oversubscribed), and the capacity was used


async def test_tenants_are_counted_apart_and_quota_rejections_carry_quota_failure(server_factory):
    server = server_factory(min_workers=1, max_workers=1, tenant_max_queued=1)
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        as_acme = (("x-zako-tenant", "acme"),)
        blocker = asyncio.ensure_future(
            stub.Run(
                pb.RunRequest(
                    task=pb.Task(id="block", source="while (true) {}", timeout=Duration(seconds=30))
                ),
                metadata=as_acme,
            )
        )
        for _ in range(250):
            if (await stub.Stats(pb.StatsRequest())).pool.busy:
                break
            await asyncio.sleep(0.02)
        # A task sent right after another began may be queued behind it on its worker
        # (prefetch, pool.py); once that one has run a while, the next waits in line.
        await asyncio.sleep(0.1)
        queued = asyncio.ensure_future(
            stub.Run(
                pb.RunRequest(task=pb.Task(id="q1", source="module.exports = 1")), metadata=as_acme
            )
        )
        for _ in range(250):
            if (await stub.Stats(pb.StatsRequest())).queue.depth:
                break
            await asyncio.sleep(0.02)
        try:
            await stub.Run(
                pb.RunRequest(task=pb.Task(source="module.exports = 2")), metadata=as_acme
            )
            raise AssertionError("the tenant's queue quota did not apply")
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            status = rpc_status.from_call(exc)
            kinds = {d.type_url.rsplit("/", 1)[-1]: d for d in status.details}
            failure = error_details_pb2.QuotaFailure()
            kinds["google.rpc.QuotaFailure"].Unpack(failure)
            assert failure.violations[0].subject == "tenant/acme/max_queued"
            retry = error_details_pb2.RetryInfo()
            kinds["google.rpc.RetryInfo"].Unpack(retry)
            assert retry.retry_delay.ToTimedelta().total_seconds() > 0
        stats = await stub.Stats(pb.StatsRequest())
        tenants = {t.tenant: t for t in stats.tenants}
        assert tenants["acme"].running == 1 and tenants["acme"].queued == 1
        assert tenants["acme"].rejected == 1
        await stub.Cancel(pb.CancelRequest(task_id="block"))
        await blocker
        assert (await queued).completed.result.value_json == "1"
        stats = await stub.Stats(pb.StatsRequest())
        cpu = {r.name: r for r in stats.resources}["cpu"]
        assert cpu.in_use == 0 and cpu.queued_demand == 0 and cpu.capacity > 0
        assert stats.queue_wait.count == 2 and stats.run_time.count >= 1


async def test_queue_timeout_fails_a_waiting_task_without_running_it(server_factory):
    server = server_factory(min_workers=1, max_workers=1)
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)

        async def requests():
            yield pb.SubmitRequest(
                task=pb.Task(
                    id="hog", source="while (true) {}", timeout=Duration(nanos=800_000_000)
                )
            )
            yield pb.SubmitRequest(
                task=pb.Task(
                    id="impatient",
                    source="module.exports = 1",
                    queue_timeout=Duration(nanos=200_000_000),
                )
            )

        events = [e async for e in stub.Submit(requests(), timeout=30)]
    impatient = [e.WhichOneof("event") for e in events if e.task_id == "impatient"]
    assert impatient == ["accepted", "failed"]  # never started
    failed = next(e for e in events if e.task_id == "impatient" and e.HasField("failed"))
    assert failed.failed.reason == pb.FAILURE_REASON_DEADLINE_EXCEEDED
    assert "did not run" in failed.failed.error.message


async def test_request_beyond_capacity_is_failed_precondition_naming_it(zako_server):
    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        try:
            await stub.Run(
                pb.RunRequest(
                    task=pb.Task(
                        source="module.exports = 1",
                        resources=pb.ResourceRequests(extras={"gpu": 1}),
                    )
                )
            )
            raise AssertionError("a task needing a GPU was accepted")
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "'gpu'" in exc.details() and "capacity is 0" in exc.details()
        caps = await stub.Capabilities(pb.CapabilitiesRequest())
        assert caps.resource_capacity["workers"] == zako_server.settings.max_workers
        assert caps.resource_capacity["cpu"] >= 1000
