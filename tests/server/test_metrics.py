"""Prometheus metrics scraped over HTTP and checked against known traffic."""

from __future__ import annotations

import asyncio
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_metrics_count_known_traffic(server_factory):
    server = server_factory(metrics_listen="127.0.0.1:0", max_workers=1)
    port = server.server.metrics.port
    assert port
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        for i in range(3):
            await stub.Run(pb.RunRequest(task=pb.Task(source=f"module.exports = {i}")))
        await stub.Run(pb.RunRequest(task=pb.Task(source="throw new Error('x')")))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Run(pb.RunRequest(task=pb.Task(source="")))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        stats = await stub.Stats(pb.StatsRequest())
    samples = await asyncio.to_thread(scrape, port)
    # Stats and Prometheus read the same figures (stats.TaskFigures): they agree.
    for outcome, value in (
        ("admitted", stats.tasks.accepted),
        ("completed", stats.tasks.completed),
        ("failed", stats.tasks.failed),
        ("cancelled", stats.tasks.cancelled),
        ("rejected", stats.tasks.rejected),
    ):
        assert samples[("zako_tasks_total", (("outcome", outcome),))] == value, outcome
    assert dict(stats.tasks.failed_by_reason) == {"JS_ERROR": 1}
    assert dict(stats.tasks.rejected_by_reason) == {"INVALID_ARGUMENT": 1}
    assert samples[("zako_rpc_requests_total", (("code", "OK"), ("method", "Run")))] == 4
    assert (
        samples[("zako_rpc_requests_total", (("code", "INVALID_ARGUMENT"), ("method", "Run")))] == 1
    )
    assert samples[("zako_rpc_duration_seconds_count", (("method", "Run"),))] == 5
    assert samples[("zako_tasks_total", (("outcome", "completed"),))] == 3
    assert samples[("zako_tasks_total", (("outcome", "failed"),))] == 1
    assert samples[("zako_tasks_failed_total", (("reason", "JS_ERROR"),))] == 1
    assert samples[("zako_tasks_rejected_total", (("code", "INVALID_ARGUMENT"),))] == 1
    assert samples[("zako_task_run_seconds_count", ())] == 4
    assert samples[("zako_task_wait_seconds_count", ())] == 4
    assert samples[("zako_queue_length", ())] == 0
    assert samples[("zako_tasks_in_flight", ())] == 0
    assert samples[("zako_worker_events_total", (("event", "started"),))] >= 1
    assert samples[("zako_resource", (("measure", "capacity"), ("resource", "workers")))] == 1
    # No label may carry a task id or tenant: every label value is from a bounded set.
    label_names = {name for (_, labels) in samples for name, _ in labels}
    assert label_names <= {
        "code",
        "method",
        "outcome",
        "reason",
        "event",
        "state",
        "resource",
        "measure",
        "priority",
        "le",
    }
