"""Capabilities and the GC report as SDK values: from the wire message, and as JSON."""

from __future__ import annotations

import json

from google.protobuf.duration_pb2 import Duration

from zako_sdk import CONTEXT_NAMES, CancelResult, Capabilities, GCReport, HeapUsage, TaskState
from zako_sdk._cli_args import EXIT_OK
from zako_sdk.capabilities import Limits, PriorityRange
from zako_sdk.cli import main
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.stats import VersionInfo, WorkerGC


def test_capabilities_from_the_message():
    message = pb.CapabilitiesResponse(
        limits=pb.Limits(
            max_message_bytes=4 << 20,
            max_modules=64,
            min_timeout=Duration(nanos=10_000_000),
            default_timeout=Duration(seconds=30),
            max_timeout=Duration(seconds=300),
            max_tasks_per_stream=1000,
        ),
        context_kinds=[pb.CONTEXT_KIND_BUILD, pb.CONTEXT_KIND_CONFIG, 42],
        priority=pb.PriorityRange(min=-10, max=10),
        builtin_modules=["zako:core"],
        system_access_allowed=True,
        versions=pb.VersionInfo(server="0.1.0", protocol="zako.v1"),
        resource_capacity={"cpu": 2000.0},
        isolate_reuse=True,
    )
    caps = Capabilities.from_proto(message)
    assert caps.limits == Limits(
        max_message_bytes=4 << 20,
        max_modules=64,
        min_timeout=0.01,
        default_timeout=30.0,
        max_timeout=300.0,
        max_tasks_per_stream=1000,
    )
    # Names as run(context=…) takes them; a kind newer than this SDK keeps its number.
    assert caps.context_kinds == ("build", "config", "CONTEXT_KIND_42")
    assert caps.priority == PriorityRange(-10, 10)
    assert caps.builtin_modules == ("zako:core",) and caps.system_access_allowed is True
    assert caps.versions == VersionInfo(server="0.1.0", protocol="zako.v1")
    assert caps.resource_capacity == {"cpu": 2000.0} and caps.isolate_reuse is True
    assert Capabilities.from_proto(pb.CapabilitiesResponse()) == Capabilities()


def test_capabilities_json_keeps_the_proto_field_names():
    caps = Capabilities.from_proto(
        pb.CapabilitiesResponse(
            limits=pb.Limits(max_timeout=Duration(seconds=300)),
            context_kinds=[pb.CONTEXT_KIND_PACKAGE],
        )
    )
    document = json.loads(json.dumps(caps.to_dict()))
    assert document["limits"]["max_timeout"] == 300.0
    assert document["context_kinds"] == ["package"]
    assert document["priority"] == {"min": 0, "max": 0}
    assert document["isolate_reuse"] is False  # defaults are printed, not dropped


def test_gc_report_from_the_message():
    message = pb.BroadcastGCResponse(
        workers=[
            pb.WorkerGC(
                worker_id="w1",
                before=pb.HeapUsage(used_bytes=300, total_bytes=400, limit_bytes=1000),
                after=pb.HeapUsage(used_bytes=100, total_bytes=400, limit_bytes=1000),
                rss_before_bytes=9000,
                rss_after_bytes=8000,
            )
        ],
        total_freed_bytes=200,
    )
    report = GCReport.from_proto(message)
    assert report == GCReport(
        (WorkerGC("w1", HeapUsage(300, 400, 1000), HeapUsage(100, 400, 1000), 9000, 8000),),
        200,
    )
    assert report.to_dict()["workers"][0]["after"]["used_bytes"] == 100


def test_cli_capabilities_and_gc_print_the_values_as_json(zako_server, capsys):
    assert main(["capabilities", "--target", zako_server.target]) == EXIT_OK
    caps = json.loads(capsys.readouterr().out)
    assert caps["context_kinds"] == list(CONTEXT_NAMES)
    assert caps["limits"]["max_timeout"] >= caps["limits"]["default_timeout"] > 0
    assert main(["gc", "--target", zako_server.target]) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert {"workers", "total_freed_bytes"} == set(report)
    # min_workers=1: there is always a live worker to collect.
    assert report["workers"] and all(w["worker_id"] for w in report["workers"])


def test_cancel_result_names_the_wire_states():
    # The enum's numbers are the wire's, so it also compares equal to pb constants.
    assert [(s.name, int(s)) for s in TaskState] == [
        (pb.TaskState.Name(n).removeprefix("TASK_STATE_"), n) for n in pb.TaskState.values()
    ]
    running = CancelResult.from_proto(pb.CancelResponse(previous_state=pb.TASK_STATE_RUNNING))
    assert running.previous_state is TaskState.RUNNING
    assert running.to_dict() == {"previous_state": "running"}
    newer = CancelResult.from_proto(pb.CancelResponse(previous_state=7))  # type: ignore[arg-type]
    assert newer.previous_state is TaskState.UNSPECIFIED
