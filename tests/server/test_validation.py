"""Task validation: each malformed field gets a precise rejection naming it."""

from __future__ import annotations

import pytest
from google.protobuf.duration_pb2 import Duration

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_server.server.config import build_settings
from zako_server.server.errors import CannotFit, InvalidTask
from zako_server.server.heuristics import Machine
from zako_server.server.validation import validate

SETTINGS = build_settings(
    {
        "max_source_bytes": "1000",
        "max_modules": "2",
        "max_input_bytes": "100",
        "max_memory": "1MiB",
        "default_memory": "1MiB",
        "allow_system_access": "false",
    },
    {},
    Machine(2, "test", 1 << 30, "test"),
)


def task(**fields) -> pb.Task:
    fields.setdefault("source", "module.exports = 1")
    return pb.Task(**fields)


def test_a_good_task_becomes_a_worker_frame():
    job = validate(
        task(
            id="t1",
            input_json='{"a": 1}',
            context=pb.CONTEXT_KIND_RULE,
            modules=[pb.Module(name="lib/u.js", source="x")],
            labels={"k": "v"},
        ),
        SETTINGS,
    )
    assert job.task_id == "t1"
    assert job.frame.id == "t1"
    assert job.frame.entry == "main.js"
    assert job.frame.modules == {"main.js": "module.exports = 1", "lib/u.js": "x"}
    context = job.frame.context
    assert (context.kind, context.task_id, context.labels, context.system_access) == (
        "rule",
        "t1",
        {"k": "v"},
        False,
    )
    assert job.timeout_s == SETTINGS.default_timeout
    assert job.request == {"cpu": 1000.0, "memory": float(1 << 20)}
    assert job.size_bytes == len("module.exports = 1") + 1 + len('{"a": 1}')
    assert job.queue_timeout_s is None


def test_missing_id_is_assigned():
    assert len(validate(task(), SETTINGS).task_id) == 32


@pytest.mark.parametrize(
    ("fields", "error", "field", "words"),
    [
        ({"source": "  "}, InvalidTask, "task.source", "empty"),
        ({"source": "x" * 1001}, InvalidTask, "task.source", "1001 bytes"),
        ({"id": "has space"}, InvalidTask, "task.id", "printable"),
        ({"input_json": "{nope"}, InvalidTask, "task.input_json", "not valid JSON"),
        ({"input_json": "1" * 101}, InvalidTask, "task.input_json", "limit is 100"),
        (
            {"modules": [pb.Module(name="../etc", source="")]},
            InvalidTask,
            "task.modules[0]",
            "'..'",
        ),
        (
            {"modules": [pb.Module(name="zako:core", source="")]},
            InvalidTask,
            "task.modules[0]",
            "reserved",
        ),
        (
            {"modules": [pb.Module(name="a", source=""), pb.Module(name="a", source="")]},
            InvalidTask,
            "task.modules[1]",
            "twice",
        ),
        (
            {"modules": [pb.Module(name=f"m{i}", source="") for i in range(3)]},
            InvalidTask,
            "task.modules",
            "limit is 2",
        ),
        ({"context": 99}, InvalidTask, "task.context", "not a known"),
        ({"priority": 5000}, InvalidTask, "task.priority", "outside"),
        ({"system_access": True}, InvalidTask, "task.system_access", "only for config"),
        (
            {"system_access": True, "context": pb.CONTEXT_KIND_CONFIG},
            CannotFit,
            "task.system_access",
            "does not grant",
        ),
        (
            {"resources": pb.ResourceRequests(memory_bytes=-1)},
            InvalidTask,
            "task.resources.memory_bytes",
            ">= 0",
        ),
        (
            {"resources": pb.ResourceRequests(memory_bytes=2 << 20)},
            CannotFit,
            "task.resources.memory_bytes",
            "largest heap",
        ),
        (
            {"resources": pb.ResourceRequests(extras={"gpu": float("nan")})},
            InvalidTask,
            "task.resources.extras['gpu']",
            "finite",
        ),
        (
            {"resources": pb.ResourceRequests(extras={"cpu": 1})},
            InvalidTask,
            "task.resources.extras['cpu']",
            "typed field",
        ),
        ({"queue_timeout": Duration(seconds=-1)}, InvalidTask, "task.queue_timeout", "positive"),
    ],
)
def test_bad_fields_are_named(fields, error, field, words):
    with pytest.raises(error) as exc:
        validate(task(**fields), SETTINGS)
    assert exc.value.field == field
    assert words in exc.value.message


def test_timeout_is_capped_by_server_max_and_call_deadline():
    job = validate(task(timeout=Duration(seconds=10_000)), SETTINGS)
    assert job.timeout_s == SETTINGS.max_timeout
    job = validate(task(timeout=Duration(seconds=20)), SETTINGS, deadline_s=3.0)
    assert job.timeout_s == 3.0
    with pytest.raises(InvalidTask, match="below the minimum"):
        validate(task(timeout=Duration(nanos=1)), SETTINGS)


def test_the_frame_asks_for_a_warm_isolate_of_the_callers_tenant():
    job = validate(task(), SETTINGS, tenant="acme")
    assert job.frame.reuse == "acme"
    assert job.frame.reuse_max_tasks == SETTINGS.isolate_max_tasks == 500


def test_fresh_isolate_task_gets_no_reuse_key():
    assert validate(task(fresh_isolate=True), SETTINGS, tenant="acme").frame.reuse is None


def test_isolate_reuse_never_gives_every_task_a_fresh_isolate():
    settings = SETTINGS.replace(isolate_reuse="never", isolate_max_tasks=7)
    job = validate(task(), settings, tenant="acme")
    assert job.frame.reuse is None
    assert job.frame.reuse_max_tasks == 7
