"""Structured server logs: JSON lines carrying the task id and tenant."""

from __future__ import annotations

import json
import logging

from zako_server.server.logs import JsonFormatter, TextFormatter


def record(**extra) -> logging.LogRecord:
    rec = logging.LogRecord(
        "zako.engine", logging.INFO, __file__, 1, "task %s failed", ("t1",), None
    )
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_json_lines_carry_task_fields():
    entry = json.loads(
        JsonFormatter().format(record(task_id="t1", tenant="acme", reason="FAILURE_REASON_TIMEOUT"))
    )
    assert entry["message"] == "task t1 failed" and entry["level"] == "info"
    assert (entry["task_id"], entry["tenant"], entry["reason"]) == (
        "t1",
        "acme",
        "FAILURE_REASON_TIMEOUT",
    )
    assert entry["time"].endswith("Z") and "worker_id" not in entry


def test_text_lines_append_task_fields():
    line = TextFormatter().format(record(task_id="t1", tenant="acme"))
    assert line.endswith("task t1 failed [task_id=t1 tenant=acme]")


async def test_server_logs_a_failed_task_with_its_id_and_tenant(server_factory, caplog):
    import grpc

    from zako_sdk.proto.zako.v1 import executor_pb2 as pb
    from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc

    server = server_factory()
    caplog.set_level(logging.INFO, logger="zako.engine")
    async with grpc.aio.insecure_channel(server.target) as channel:
        await pb_grpc.ExecutorStub(channel).Run(
            pb.RunRequest(task=pb.Task(id="boom", source="throw 1")),
            metadata=(("x-zako-tenant", "acme"),),
        )
    ours = [r for r in caplog.records if getattr(r, "task_id", None) == "boom"]
    assert ours and ours[-1].tenant == "acme" and ours[-1].reason == "FAILURE_REASON_JS_ERROR"
