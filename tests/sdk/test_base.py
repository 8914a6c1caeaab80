"""The SDK's pure logic: request building and event → outcome mapping, without a server."""

from __future__ import annotations

import datetime as dt
import json

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from zako_sdk import (
    InvalidTask,
    LogLine,
    Overloaded,
    Resources,
    Result,
    TaskCancelled,
    TaskError,
    TaskFailed,
    TaskRejected,
    TaskSpec,
    TaskTimeout,
    Timings,
)
from zako_sdk._base import build_task, context_kind, duration, new_task_id, prepare
from zako_sdk._channel import channel_options, metadata_tuple
from zako_sdk._outcomes import TaskEvents, outcome_of_run, unwrap
from zako_sdk.proto.zako.v1 import executor_pb2 as pb

T0 = timestamp_pb2.Timestamp(seconds=1_700_000_000, nanos=500_000_000)


def event(task_id: str = "t1", **kind: object) -> pb.SubmitResponse:
    return pb.SubmitResponse(task_id=task_id, time=T0, **kind)  # type: ignore[arg-type]


def completed(value_json: str = "42") -> pb.Completed:
    timings = pb.Timings(
        accepted_at=T0,
        started_at=T0,
        finished_at=T0,
        queued=duration_pb2.Duration(nanos=1_000_000),
        run=duration_pb2.Duration(seconds=2, nanos=500_000_000),
        cpu=duration_pb2.Duration(nanos=250_000_000),
    )
    heap = pb.HeapUsage(used_bytes=10, total_bytes=20, limit_bytes=30)
    return pb.Completed(result=pb.Result(value_json=value_json, timings=timings, heap=heap))


class TestBuildTask:
    def test_defaults_fill_a_minimal_task(self):
        task = build_task(TaskSpec("module.exports = 1"), default_timeout=None)
        assert len(task.id) == 32 and int(task.id, 16) >= 0
        assert task.source == "module.exports = 1"
        assert task.input_json == ""  # empty means null on the wire
        assert task.context == pb.CONTEXT_KIND_BUILD
        assert not task.HasField("timeout")
        assert not task.HasField("resources")
        assert task.entry_name == "" and task.priority == 0 and not task.system_access
        assert not task.fresh_isolate  # the server may reuse a warm isolate

    def test_every_option_reaches_the_wire(self):
        spec = TaskSpec(
            "src",
            input={"a": [1, 2**60]},
            context="config",
            timeout=1.5,
            modules={"lib/a.js": "A", "b": "B"},
            entry_name="main.js",
            priority=-3,
            labels={"k": "v"},
            resources={"cpu_millis": 500, "memory_bytes": 1 << 20, "extras": {"licenses": 1}},
            system_access=True,
            task_id="my-id",
            fresh_isolate=True,
            cache="refresh",
        )
        prepared = prepare(spec, default_timeout=9.0)
        task = prepared.task
        assert task.cache == pb.CACHE_POLICY_REFRESH
        # The modules go as a tree by digest; the tree holds them, sorted by name.
        assert prepared.tree is not None and dict(prepared.tree.files) == {
            "b": "B",
            "lib/a.js": "A",
        }
        assert task.tree.hash == prepared.tree.digest.hash and not task.modules
        # build_task alone puts them inline, as a server without a content store takes them.
        task = build_task(spec, default_timeout=9.0)
        assert task.fresh_isolate
        assert task.id == "my-id"
        assert json.loads(task.input_json) == {"a": [1, 2**60]}  # big ints survive exactly
        assert task.context == pb.CONTEXT_KIND_CONFIG
        assert task.timeout.seconds == 1 and task.timeout.nanos == 500_000_000
        assert [(m.name, m.source) for m in task.modules] == [("b", "B"), ("lib/a.js", "A")]
        assert task.entry_name == "main.js" and task.priority == -3
        assert dict(task.labels) == {"k": "v"}
        assert task.resources.cpu_millis == 500 and task.resources.memory_bytes == 1 << 20
        assert dict(task.resources.extras) == {"licenses": 1.0}
        assert task.system_access

    def test_resources_dataclass_is_accepted(self):
        task = build_task(TaskSpec("s", resources=Resources(cpu_millis=250)), default_timeout=None)
        assert task.resources.cpu_millis == 250

    def test_unknown_resource_key_is_refused_here(self):
        with pytest.raises(ValueError, match="cpu"):
            build_task(TaskSpec("s", resources={"cpus": 1}), default_timeout=None)

    def test_fresh_isolate_reaches_the_wire(self):
        assert build_task(TaskSpec("s", fresh_isolate=True), default_timeout=None).fresh_isolate

    def test_a_cached_timeout_is_not_shared_between_tasks(self):
        first = build_task(TaskSpec("s", timeout=2.5), default_timeout=None)
        first.timeout.seconds = 99  # a caller mutating its task must not change the next one
        assert build_task(TaskSpec("s", timeout=2.5), default_timeout=None).timeout.seconds == 2

    def test_client_default_timeout_applies_only_when_not_given(self):
        assert build_task(TaskSpec("s"), default_timeout=3.0).timeout.seconds == 3
        explicit_none = build_task(TaskSpec("s", timeout=None), default_timeout=3.0)
        assert not explicit_none.HasField("timeout")  # None means "the server's default"

    def test_empty_task_id_gets_a_fresh_one(self):
        assert build_task(TaskSpec("s", task_id=""), default_timeout=None).id

    def test_input_is_compact_utf8_json(self):
        task = build_task(TaskSpec("s", input={"é": "ü", "n": None}), default_timeout=None)
        assert task.input_json == '{"é":"ü","n":null}'

    @pytest.mark.parametrize("bad", [float("nan"), {1, 2}, object()])
    def test_input_that_is_not_json_fails_at_the_call_site(self, bad):
        with pytest.raises((TypeError, ValueError)):
            build_task(TaskSpec("s", input=bad), default_timeout=None)

    def test_ids_are_unique(self):
        assert len({new_task_id() for _ in range(1000)}) == 1000


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("package", pb.CONTEXT_KIND_PACKAGE),
        ("build", pb.CONTEXT_KIND_BUILD),
        ("rule", pb.CONTEXT_KIND_RULE),
        ("toolchain", pb.CONTEXT_KIND_TOOLCHAIN),
        ("config", pb.CONTEXT_KIND_CONFIG),
        ("Config", pb.CONTEXT_KIND_CONFIG),
    ],
)
def test_context_names_map_to_kinds(name, kind):
    assert context_kind(name) == kind


def test_unknown_context_is_a_value_error():
    with pytest.raises(ValueError, match="unknown context 'shell'"):
        context_kind("shell")


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (0.0, (0, 0)),
        (1.5, (1, 500_000_000)),
        (0.000000001, (0, 1)),
        (30, (30, 0)),
    ],
)
def test_duration_is_exact_to_the_nanosecond(seconds, expected):
    d = duration(seconds)
    assert (d.seconds, d.nanos) == expected


def test_channel_options_let_the_caller_override_defaults():
    assert ("grpc.max_receive_message_length", -1) in channel_options(None)
    merged = dict(channel_options([("grpc.max_receive_message_length", 10), ("x", 1)]))
    assert merged["grpc.max_receive_message_length"] == 10 and merged["x"] == 1


def test_metadata_accepts_mappings_and_pairs():
    assert metadata_tuple({"Authorization": "t"}) == (("authorization", "t"),)
    assert metadata_tuple([("a", "1"), ("a", "2")]) == (("a", "1"), ("a", "2"))
    assert metadata_tuple(None) == ()


class TestTaskEvents:
    def test_a_terminal_only_result_names_its_worker_from_the_result(self):
        events = TaskEvents("t1")
        terminal = pb.Completed(result=pb.Result(value_json="1", worker_id="w4"))
        result = events.apply(event(completed=terminal))
        assert isinstance(result, Result) and result.worker_id == "w4"
        assert events.worker_id == "w4"  # what the handle reports once it completed

    def test_progress_then_completed_gives_a_result(self):
        seen = []
        events = TaskEvents("t1", on_log=seen.append)
        assert events.apply(event(accepted=pb.Accepted(queue_position=3))) is None
        assert events.apply(event(started=pb.Started(worker_id="w7", worker_pid=9))) is None
        log = pb.LogLine(level=pb.LOG_LEVEL_WARN, message="careful", time=T0)
        assert events.apply(event(log=log)) is None
        result = events.apply(event(completed=completed('{"ok":true}')))
        assert isinstance(result, Result)
        assert result.task_id == "t1" and result.value == {"ok": True}
        assert result.worker_id == "w7" and events.queue_position == 3
        assert [(line.level, line.message) for line in result.logs] == [("warn", "careful")]
        assert seen == list(result.logs)
        assert result.logs[0].time == dt.datetime(
            2023, 11, 14, 22, 13, 20, 500000, tzinfo=dt.timezone.utc
        )
        assert result.timings.run == 2.5 and result.timings.cpu == 0.25
        assert result.timings.queued == pytest.approx(0.001)
        assert result.heap.limit_bytes == 30

    def test_events_after_the_terminal_one_are_ignored(self):
        events = TaskEvents("t1")
        first = events.apply(event(completed=completed("1")))
        assert events.apply(event(completed=completed("2"))) is None
        assert events.outcome is first

    def test_failed_maps_to_task_failed_with_the_js_error(self):
        error = pb.JsError(
            name="TypeError",
            message="x is not a function",
            stack="TypeError: x is not a function\n    at main.js:3:5",
            module="main.js",
            line=3,
            column=5,
        )
        failed = pb.Failed(reason=pb.FAILURE_REASON_JS_ERROR, error=error)
        outcome = TaskEvents("t1").apply(event(failed=failed))
        assert type(outcome) is TaskFailed
        assert outcome.reason == "JS_ERROR" and outcome.task_id == "t1"
        assert (outcome.js_error.module, outcome.js_error.line, outcome.js_error.column) == (
            "main.js",
            3,
            5,
        )
        assert str(outcome) == "TypeError: x is not a function\n    at main.js:3:5"

    def test_timeout_is_its_own_class(self):
        failed = pb.Failed(
            reason=pb.FAILURE_REASON_TIMEOUT,
            error=pb.JsError(name="TimeoutError", message="ran past 1s"),
            timings=pb.Timings(run=duration_pb2.Duration(seconds=1)),
        )
        outcome = TaskEvents("t1").apply(event(failed=failed))
        assert isinstance(outcome, TaskTimeout) and isinstance(outcome, TaskFailed)
        assert str(outcome) == "TIMEOUT: TimeoutError: ran past 1s"
        assert outcome.timings == Timings(run=1.0)

    def test_cancelled(self):
        outcome = TaskEvents("t1").apply(
            event(cancelled=pb.Cancelled(reason="client request", was_running=True))
        )
        assert isinstance(outcome, TaskCancelled)
        assert outcome.reason == "client request" and outcome.was_running

    @pytest.mark.parametrize(
        ("code", "cls"),
        [
            (grpc.StatusCode.INVALID_ARGUMENT, InvalidTask),
            (grpc.StatusCode.FAILED_PRECONDITION, InvalidTask),
            (grpc.StatusCode.ALREADY_EXISTS, InvalidTask),
            (grpc.StatusCode.RESOURCE_EXHAUSTED, Overloaded),
            (grpc.StatusCode.UNAVAILABLE, Overloaded),  # draining: capacity, not transport
            (grpc.StatusCode.PERMISSION_DENIED, TaskRejected),
        ],
    )
    def test_rejected_maps_by_code(self, code, cls):
        rejected = pb.Rejected(
            code=code.value[0],
            message="task.timeout: too long",
            field="task.timeout",
            retry_after=duration_pb2.Duration(nanos=250_000_000),
        )
        outcome = TaskEvents("t1").apply(event(rejected=rejected))
        assert type(outcome) is cls
        assert outcome.code is code and outcome.field == "task.timeout"
        assert outcome.retry_after == 0.25
        assert str(outcome) == f"{code.name}: task.timeout: too long"

    def test_rejected_without_retry_hint(self):
        outcome = TaskEvents("t1").apply(event(rejected=pb.Rejected(code=3, message="bad")))
        assert outcome.retry_after is None


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [
        (0, 0),
        (1_700_000_000, 500_000_000),
        (1_700_000_000, 999_999_999),
        (1, 1),
        (-1, 999_000),
        (253_402_300_799, 999_999_999),
    ],
)
def test_timestamps_convert_as_to_datetime_does(seconds, nanos):
    message = pb.LogLine(time=timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos))
    assert LogLine.from_proto(message).time == message.time.ToDatetime(tzinfo=dt.timezone.utc)


def test_warm_isolate_is_read_from_the_timings():
    result = TaskEvents("t1").apply(
        event(
            completed=pb.Completed(
                result=pb.Result(value_json="1", timings=pb.Timings(warm_isolate=True))
            )
        )
    )
    assert result.timings.warm_isolate is True
    assert result.to_dict()["timings"]["warm_isolate"] is True
    assert Timings.from_proto(pb.Timings()).warm_isolate is False


class TestRunResponse:
    def test_completed_carries_the_logs(self):
        response = pb.RunResponse(
            task_id="r1",
            completed=completed("[1,2]"),
            logs=[pb.LogLine(level=pb.LOG_LEVEL_INFO, message="hi")],
        )
        result = unwrap(outcome_of_run(response))
        assert result.value == [1, 2] and result.task_id == "r1"
        assert [line.message for line in result.logs] == ["hi"]
        assert result.logs[0].time is None  # unset stays unset, not the epoch

    def test_failed_raises_on_unwrap(self):
        response = pb.RunResponse(
            task_id="r1",
            failed=pb.Failed(
                reason=pb.FAILURE_REASON_OUT_OF_MEMORY, error=pb.JsError(name="RangeError")
            ),
        )
        with pytest.raises(TaskFailed) as info:
            unwrap(outcome_of_run(response))
        assert info.value.reason == "OUT_OF_MEMORY"

    def test_missing_outcome_is_an_error_not_a_value(self):
        assert isinstance(outcome_of_run(pb.RunResponse(task_id="r1")), TaskError)
