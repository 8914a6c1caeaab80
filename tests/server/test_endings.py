"""The mapping of a worker's done event to the task's terminal event (endings.py)."""

from __future__ import annotations

import msgspec
import pytest

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_server.protocol import DoneEvent, FailureReason, HeapFigures, JsError
from zako_server.server.endings import finish_from_worker
from zako_server.server.records import Counters, TaskRecord
from zako_server.server.stats import Histogram
from zako_server.server.validation import Job


def finish(done: DoneEvent, cancel_reason: str = "") -> pb.SubmitResponse:
    events: list[pb.SubmitResponse] = []
    job = Job("t1", 0, 1.0, None, {}, 0, None)  # type: ignore[arg-type]
    record = TaskRecord(job, object(), events.append)
    record.started_mono = record.accepted_mono
    record.cancel_reason = cancel_reason
    finish_from_worker(record, done, Counters(), Histogram(), 64 << 20)
    assert len(events) == 1
    return events[0]


DONE = DoneEvent("t1", 0.001, 0.002, HeapFigures(1, 2, 3), 0, False, value="2")
ERROR = JsError("TypeError", "boom", "TypeError: boom\n    at main.js:3:7", "main.js", 3, 7)


@pytest.mark.parametrize("warm", [True, False])
def test_warm_isolate_comes_from_the_done_event(warm):
    event = finish(msgspec.structs.replace(DONE, warm=warm))
    assert event.completed.result.timings.warm_isolate is warm
    assert event.completed.result.value_json == "2"
    assert event.completed.result.heap == pb.HeapUsage(used_bytes=1, total_bytes=2, limit_bytes=3)


def test_a_failed_task_reports_its_error_its_isolate_and_its_heap():
    done = msgspec.structs.replace(
        DONE, value=None, reason=FailureReason.JS_ERROR, error=ERROR, warm=True
    )
    failed = finish(done).failed
    assert failed.reason == pb.FAILURE_REASON_JS_ERROR
    assert (failed.error.name, failed.error.module, failed.error.line, failed.error.column) == (
        "TypeError",
        "main.js",
        3,
        7,
    )
    assert failed.timings.warm_isolate is True and failed.heap.used_bytes == 1


@pytest.mark.parametrize("reason", [r for r in FailureReason if r is not FailureReason.CANCELLED])
def test_every_failure_reason_has_its_own_contract_number(reason):
    failed = finish(msgspec.structs.replace(DONE, value=None, reason=reason, error=ERROR)).failed
    assert pb.FailureReason.Name(failed.reason) == f"FAILURE_REASON_{reason.name}"


def test_an_error_without_a_location_reports_zeros_and_a_lost_heap_none():
    error = JsError("WorkerLost", "gone", "")
    done = msgspec.structs.replace(
        DONE, value=None, reason=FailureReason.WORKER_LOST, error=error, heap=None
    )
    failed = finish(done).failed
    assert (failed.error.module, failed.error.line, failed.error.column) == ("", 0, 0)
    assert not failed.HasField("heap") or failed.heap == pb.HeapUsage()


@pytest.mark.parametrize("cancel_reason", ["", "client went away"])
def test_a_cancelled_done_or_a_cancel_request_ends_the_task_cancelled(cancel_reason):
    reason = FailureReason.CANCELLED if not cancel_reason else FailureReason.JS_ERROR
    done = msgspec.structs.replace(DONE, value=None, reason=reason, error=ERROR)
    event = finish(done, cancel_reason)
    assert event.WhichOneof("event") == "cancelled"
    assert event.cancelled.reason == (cancel_reason or "cancelled")
