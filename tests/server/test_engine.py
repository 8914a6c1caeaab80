"""The engine's mapping of a worker's done frame to the task's terminal event."""

from __future__ import annotations

from typing import Any

import pytest

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_server.server.engine import Engine, TaskRecord
from zako_server.server.validation import Job


def finish(done: dict[str, Any]) -> pb.SubmitResponse:
    events: list[pb.SubmitResponse] = []
    job = Job("t1", 0, 1.0, {}, {}, 0, None)
    record = TaskRecord(job, object(), events.append)
    record.started_mono = record.accepted_mono
    Engine(admission=None, pool=None)._finish_from_worker(record, done)  # type: ignore[arg-type]
    assert len(events) == 1
    return events[0]


DONE = {
    "ev": "done",
    "id": "t1",
    "ok": True,
    "value": "2",
    "cpu_s": 0.001,
    "run_s": 0.002,
    "heap": {"used": 1, "total": 2, "limit": 3},
}


@pytest.mark.parametrize(("warm", "expected"), [(True, True), (False, False), (None, False)])
def test_warm_isolate_comes_from_the_done_frame_and_defaults_to_fresh(warm, expected):
    done = dict(DONE) if warm is None else {**DONE, "warm": warm}
    assert finish(done).completed.result.timings.warm_isolate is expected


def test_a_failed_task_reports_its_isolate_too():
    done = {
        **DONE,
        "ok": False,
        "reason": "js_error",
        "warm": True,
        "error": {"name": "Error", "message": "boom"},
    }
    assert finish(done).failed.timings.warm_isolate is True
