"""Malformed and hostile requests thrown at a running server (hypothesis).

Whatever arrives, the server keeps serving, every task gets exactly one terminal event,
a refusal names what was wrong, and no worker is lost.
"""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc

TERMINAL = {"completed", "failed", "cancelled", "rejected"}
text = st.text(max_size=40)
sources = st.one_of(
    text,
    st.sampled_from(
        [
            "module.exports = 1",
            "}{",
            "while(true){}",
            "module.exports = () => { throw null }",
            "module.exports = () => new Promise(() => {})",
            "require('zako:nope')",
            "module.exports = () => 'x'.repeat(2000)",
            "console.log('a'.repeat(500))",
            "module.exports = () => { const a = []; while (true) a.push(a) }",
            "module.exports = async () => { for (;;) await null }",
            "module.exports = () => Symbol()",
            "module.exports = () => globalThis",
            "Object.defineProperty(globalThis, '__zako', {value: 1})",
            "Error.prepareStackTrace = () => 'pwned'; throw new Error('x')",
            "'\\ud800'",
            "x" * 5000,
        ]
    ),
)
tasks = st.builds(
    pb.Task,
    id=st.one_of(st.just(""), text, st.sampled_from(["dup", "a b", "\n", "é", "x" * 300])),
    source=sources,
    entry_name=st.one_of(st.just(""), text, st.sampled_from(["../x", "zako:core", "a/b.js"])),
    modules=st.lists(
        st.builds(pb.Module, name=st.one_of(text, st.just("m.js")), source=sources), max_size=3
    ),
    input_json=st.one_of(st.just(""), text, st.sampled_from(["{}", "[1,", "1e999", '"x"'])),
    context=st.integers(-2, 8),
    resources=st.builds(
        pb.ResourceRequests,
        cpu_millis=st.integers(-5, 10_000),
        memory_bytes=st.sampled_from([-1, 0, 1 << 20, 1 << 40]),
        extras=st.dictionaries(text, st.floats(allow_nan=True), max_size=2),
    ),
    priority=st.integers(-5000, 5000),
    timeout=st.one_of(
        st.none(),
        st.builds(Duration, seconds=st.integers(-3, 2), nanos=st.sampled_from([0, 1, 500_000_000])),
    ),
    labels=st.dictionaries(text, text, max_size=3),
    system_access=st.booleans(),
)


@pytest.fixture
def hostile_server(server_factory):
    # One server for all of hypothesis' examples in the test (small limits, short timeouts).
    return server_factory(
        max_workers=2,
        max_source_bytes="4KiB",
        max_input_bytes="1KiB",
        max_result_bytes="1KiB",
        max_log_bytes="2KiB",
        default_timeout="0.5",
        max_timeout="1",
    )


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(tasks, min_size=1, max_size=6))
def test_hostile_tasks_each_end_once_and_never_break_the_server(hostile_server, batch):
    with grpc.insecure_channel(hostile_server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        crashed_before = stub.Stats(pb.StatsRequest()).pool.crashed_total
        requests = [pb.SubmitRequest(task=t) for t in batch]
        ends: dict[str, list[str]] = {}
        for event in stub.Submit(iter(requests), timeout=60):
            kind = event.WhichOneof("event")
            if kind in TERMINAL:
                ends.setdefault(event.task_id, []).append(kind)
                if kind == "rejected":
                    assert event.rejected.message and event.rejected.code in {3, 6, 8, 9}
                if kind == "failed":
                    assert event.failed.reason != pb.FAILURE_REASON_UNSPECIFIED
                    assert event.failed.reason != pb.FAILURE_REASON_INTERNAL, event
        accepted_ids = [t.id for t in batch if t.id]
        for task_id, kinds in ends.items():
            # A duplicate id is legitimately refused once beside its live twin.
            if accepted_ids.count(task_id) < 2:
                assert len(kinds) == 1, (task_id, kinds)
        total_ends = sum(len(k) for k in ends.values())
        assert total_ends == len(batch)
        # Still serving, with no worker lost.
        reply = stub.Run(pb.RunRequest(task=pb.Task(source="module.exports = 'alive'")), timeout=30)
        assert reply.completed.result.value_json == '"alive"'
        assert stub.Stats(pb.StatsRequest()).pool.crashed_total == crashed_before
