"""The Executor service through raw generated stubs, against a real server and workers.

Raw stubs (not the SDK) so these tests pin the wire contract itself: what any client in
any language sees.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc

TERMINAL = {"completed", "failed", "cancelled", "rejected"}


def task(task_id: str, source: str, input_json: str = "", **fields) -> pb.Task:
    return pb.Task(id=task_id, source=source, input_json=input_json, **fields)


async def submit_all(stub, tasks, *, cancels=(), timeout=60.0):
    """Send tasks (and cancels) on one stream, half-close, collect events per task."""

    async def requests():
        for t in tasks:
            yield pb.SubmitRequest(task=t)
        for c in cancels:
            yield pb.SubmitRequest(cancel=c)

    events: dict[str, list[pb.SubmitResponse]] = {}
    call = stub.Submit(requests(), timeout=timeout)
    async for event in call:
        events.setdefault(event.task_id, []).append(event)
    return events


def kinds(events):
    return [e.WhichOneof("event") for e in events]


def terminal(events):
    ends = [e for e in events if e.WhichOneof("event") in TERMINAL]
    assert len(ends) == 1, f"expected exactly one terminal event, got {kinds(events)}"
    return ends[0]


@pytest.fixture
async def stub(zako_server):
    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        yield pb_grpc.ExecutorStub(channel)


async def test_200_tasks_multiplexed_on_one_stream_each_result_matched_to_its_id(stub):
    tasks = [
        task(
            f"t{i}",
            "module.exports = (x) => ({ twice: x.n * 2, id: x.id })",
            f'{{"n": {i}, "id": "t{i}"}}',
        )
        for i in range(200)
    ]
    events = await submit_all(stub, tasks)
    assert set(events) == {f"t{i}" for i in range(200)}
    for i in range(200):
        seq = kinds(events[f"t{i}"])
        assert seq[0] == "accepted" and seq[1] == "started" and seq[-1] == "completed", seq
        end = terminal(events[f"t{i}"])
        assert end.completed.result.value_json == f'{{"twice":{2 * i},"id":"t{i}"}}'
        assert end.completed.result.worker_id == events[f"t{i}"][1].started.worker_id


async def test_a_terminal_only_task_gets_one_event_that_names_its_worker(stub):
    unique = f"/* {time.time_ns()} */"  # never an action-cache hit (it has no worker)
    events = await submit_all(
        stub,
        [
            task("quiet", f"console.log('x'); module.exports = 1 {unique}", terminal_only=True),
            task("full", f"module.exports = 2 {unique}"),
        ],
    )
    assert kinds(events["quiet"]) == ["log", "completed"]
    assert kinds(events["full"]) == ["accepted", "started", "completed"]
    assert terminal(events["quiet"]).completed.result.worker_id.startswith("w")


async def test_many_concurrent_streams(stub):
    async def one_stream(s):
        tasks = [
            task(f"s{s}-{i}", "module.exports = async (x) => x + 1", str(i)) for i in range(20)
        ]
        return await submit_all(stub, tasks)

    results = await asyncio.gather(*(one_stream(s) for s in range(8)))
    for s, events in enumerate(results):
        for i in range(20):
            assert terminal(events[f"s{s}-{i}"]).completed.result.value_json == str(i + 1)


@pytest.mark.parametrize(
    ("source", "reason", "name", "line", "column", "words"),
    [
        (
            "module.exports = () => {\n  const a = 1;\n  throw new TypeError('bad ' + a);\n};",
            pb.FAILURE_REASON_JS_ERROR,
            "TypeError",
            3,
            9,
            "bad 1",
        ),
        (
            "const x = 1;\nlet y = ;\n",
            pb.FAILURE_REASON_SYNTAX_ERROR,
            "SyntaxError",
            2,
            9,
            "Unexpected token",
        ),
        (
            "module.exports = async () => {\n  await null;\n  throw new RangeError('late');\n};",
            pb.FAILURE_REASON_JS_ERROR,
            "RangeError",
            3,
            9,
            "late",
        ),
        (
            "module.exports = () => Promise.reject(new Error('nope'));",
            pb.FAILURE_REASON_JS_ERROR,
            "Error",
            1,
            39,
            "nope",
        ),
        (
            "module.exports = () => ({ f() {} });",
            pb.FAILURE_REASON_NOT_SERIALIZABLE,
            None,
            0,
            0,
            "f",
        ),
        ("module.exports = () => 10n;", pb.FAILURE_REASON_NOT_SERIALIZABLE, None, 0, 0, "bigint"),
    ],
)
async def test_task_errors_are_structured_with_line_and_column(
    stub, source, reason, name, line, column, words
):
    events = await submit_all(stub, [task("err", source)])
    failed = terminal(events["err"]).failed
    assert failed.reason == reason, failed
    if name:
        assert failed.error.name == name
    assert words.lower() in (failed.error.message + failed.error.stack).lower()
    if line:
        assert (failed.error.module, failed.error.line, failed.error.column) == (
            "main.js",
            line,
            column,
        ), failed.error
    if reason == pb.FAILURE_REASON_JS_ERROR:
        assert f"main.js:{line}:{column}" in failed.error.stack


async def test_timeout_fails_the_task_near_its_limit_and_the_stream_goes_on(stub):
    started = time.monotonic()
    events = await submit_all(
        stub,
        [
            task("spin", "while (true) {}", timeout=Duration(nanos=300_000_000)),
            task("after", "module.exports = 'still here'"),
        ],
    )
    failed = terminal(events["spin"]).failed
    assert failed.reason == pb.FAILURE_REASON_TIMEOUT
    assert "0.3" in failed.error.message
    assert time.monotonic() - started < 5
    assert terminal(events["after"]).completed.result.value_json == '"still here"'


async def test_bad_task_is_rejected_by_its_own_event_and_never_breaks_the_stream(stub):
    events = await submit_all(
        stub,
        [
            task("empty", ""),
            task("badjson", "module.exports = 1", "{oops"),
            task("fine", "module.exports = (x) => x", '"ok"'),
        ],
    )
    assert kinds(events["empty"]) == ["rejected"]
    rejected = events["empty"][0].rejected
    assert rejected.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert rejected.field == "task.source"
    assert events["badjson"][0].rejected.field == "task.input_json"
    assert terminal(events["fine"]).completed.result.value_json == '"ok"'


async def test_duplicate_live_id_is_rejected_as_already_exists(stub):
    events = await submit_all(
        stub,
        [
            task(
                "dup",
                "const s = Date.now(); while (Date.now() - s < 300) {}",
                context=pb.CONTEXT_KIND_CONFIG,
                system_access=True,
            ),
            task("dup", "module.exports = 2"),
        ],
    )
    # The id keeps exactly one terminal event, its live task's; the duplicate's
    # rejection carries no id (#12) and names the field and the id in its message.
    assert kinds(events["dup"])[-1] == "completed" and "rejected" not in kinds(events["dup"])
    (rejected,) = events[""]
    assert rejected.rejected.code == grpc.StatusCode.ALREADY_EXISTS.value[0]
    assert rejected.rejected.field == "task.id" and "'dup'" in rejected.rejected.message


async def test_cancel_running_task_in_band_stops_it_within_a_second(stub):
    requests: asyncio.Queue = asyncio.Queue()

    async def feed():
        while (item := await requests.get()) is not None:
            yield item

    call = stub.Submit(feed(), timeout=30)
    await requests.put(
        pb.SubmitRequest(task=task("loop", "while (true) {}", timeout=Duration(seconds=60)))
    )
    events = []
    cancel_sent = None
    async for event in call:
        events.append(event)
        if event.WhichOneof("event") == "started":
            cancel_sent = time.monotonic()
            await requests.put(
                pb.SubmitRequest(cancel=pb.CancelTask(task_id="loop", reason="test"))
            )
            await requests.put(None)
    end = terminal(events)
    assert end.cancelled.was_running and end.cancelled.reason == "test"
    assert time.monotonic() - cancel_sent < 1.0


async def test_unary_cancel_of_queued_and_running_tasks(server_factory):
    server = server_factory(max_workers=1, min_workers=1)
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)

        async def wait_for_stats(predicate):
            for _ in range(250):
                if predicate(await stub.Stats(pb.StatsRequest())):
                    return
                await asyncio.sleep(0.02)
            raise AssertionError("server never reached the expected state")

        runner = asyncio.ensure_future(
            stub.Run(
                pb.RunRequest(task=task("busy", "while (true) {}", timeout=Duration(seconds=60)))
            )
        )
        await wait_for_stats(lambda s: s.pool.busy == 1)
        # A task sent right after another began may be queued behind it on its worker
        # (prefetch, pool.py); once that one has run a while, the next waits in line.
        await asyncio.sleep(0.1)
        queued = asyncio.ensure_future(
            stub.Run(pb.RunRequest(task=task("queued", "module.exports = 1")))
        )
        await wait_for_stats(lambda s: s.queue.depth == 1)
        reply = await stub.Cancel(pb.CancelRequest(task_id="queued", reason="not needed"))
        assert reply.previous_state == pb.TASK_STATE_QUEUED
        assert (await queued).cancelled.was_running is False
        reply = await stub.Cancel(pb.CancelRequest(task_id="busy"))
        assert reply.previous_state == pb.TASK_STATE_RUNNING
        outcome = await asyncio.wait_for(runner, 2)
        assert outcome.WhichOneof("outcome") == "cancelled"
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await stub.Cancel(pb.CancelRequest(task_id="no-such-task"))
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND
        # The pool is healthy afterwards.
        done = await stub.Run(pb.RunRequest(task=task("next", "module.exports = 5")))
        assert done.completed.result.value_json == "5"


async def test_unary_calls_that_go_away_end_their_tasks_queued_or_running(server_factory):
    """A unary Run runs in its call's own task: a call the client cancels still ends
    its task (Cancelled, the worker freed), whether it waited in line or ran."""
    server = server_factory(max_workers=1, min_workers=1)
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)

        async def stats_until(predicate):
            for _ in range(250):
                stats = await stub.Stats(pb.StatsRequest())
                if predicate(stats):
                    return stats
                await asyncio.sleep(0.02)
            raise AssertionError(f"server never reached the expected state: {stats}")

        busy = stub.Run(
            pb.RunRequest(task=task("busy", "while (true) {}", timeout=Duration(seconds=60)))
        )
        await stats_until(lambda s: s.pool.busy == 1)
        await asyncio.sleep(0.1)  # past the prefetch window (see the test above)
        queued = stub.Run(pb.RunRequest(task=task("queued", "module.exports = 1")))
        await stats_until(lambda s: s.queue.depth == 1)
        queued.cancel()
        await stats_until(lambda s: s.queue.depth == 0 and s.tasks.cancelled == 1)
        busy.cancel()
        stats = await stats_until(lambda s: s.pool.busy == 0 and s.tasks.cancelled == 2)
        assert stats.queue.running == 0 and stats.tasks.completed == 0
        done = await stub.Run(pb.RunRequest(task=task("next", "module.exports = 5")))
        assert done.completed.result.value_json == "5"


async def test_client_disconnect_cancels_its_running_tasks(server_factory):
    server = server_factory(max_workers=1)
    channel = grpc.aio.insecure_channel(server.target)
    stub = pb_grpc.ExecutorStub(channel)
    requests: asyncio.Queue = asyncio.Queue()

    async def feed():
        while (item := await requests.get()) is not None:
            yield item

    call = stub.Submit(feed())
    await requests.put(
        pb.SubmitRequest(task=task("orphan", "while (true) {}", timeout=Duration(seconds=60)))
    )
    async for event in call:
        if event.WhichOneof("event") == "started":
            break
    await channel.close()  # the client vanishes mid-stream
    async with grpc.aio.insecure_channel(server.target) as fresh:
        stub = pb_grpc.ExecutorStub(fresh)
        for _ in range(100):
            stats = await stub.Stats(pb.StatsRequest())
            if stats.pool.busy == 0 and stats.tasks.cancelled == 1:
                break
            await asyncio.sleep(0.05)
        assert stats.pool.busy == 0 and stats.queue.running == 0
        assert stats.tasks.cancelled == 1


async def test_run_unary_reports_outcome_logs_and_rejects_with_status(stub):
    reply = await stub.Run(
        pb.RunRequest(
            task=task(
                "",
                "console.log('hi', {a: 1}); console.warn('careful'); module.exports = (x) => x * 3",
                "7",
            )
        )
    )
    assert reply.task_id and reply.completed.result.value_json == "21"
    assert [(line.level, line.message) for line in reply.logs] == [
        (pb.LOG_LEVEL_INFO, "hi { a: 1 }"),
        (pb.LOG_LEVEL_WARN, "careful"),
    ]
    timings = reply.completed.result.timings
    assert timings.started_at.ToNanoseconds() >= timings.accepted_at.ToNanoseconds()
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Run(pb.RunRequest(task=task("x", "module.exports = 1", "{bad")))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "task.input_json" in exc.value.details()


async def test_stats_counts_add_up(server_factory):
    server = server_factory()
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        await submit_all(
            stub,
            [
                task("ok1", "module.exports = 1"),
                task("ok2", "module.exports = 2"),
                task("bad", "throw new Error('x')"),
                task("rej", ""),
            ],
        )
        stats = await stub.Stats(pb.StatsRequest())
    t = stats.tasks
    assert (t.accepted, t.completed, t.failed, t.cancelled, t.rejected) == (3, 2, 1, 0, 1)
    assert t.accepted == t.completed + t.failed + t.cancelled
    assert dict(t.failed_by_reason) == {"JS_ERROR": 1}
    assert dict(t.rejected_by_reason) == {"INVALID_ARGUMENT": 1}
    assert stats.pool.max_workers == 2 and stats.pool.live >= 1
    assert stats.versions.protocol == "zako.v1" and stats.versions.v8


async def test_broadcast_gc_answers_with_every_worker(server_factory):
    server = server_factory(min_workers=2, max_workers=2)
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        reply = await stub.BroadcastGC(pb.BroadcastGCRequest(), timeout=30)
    assert sorted(w.worker_id for w in reply.workers) == sorted(
        w.id for w in server.server.pool.workers()
    )
    assert len(reply.workers) == 2
    for worker in reply.workers:
        assert worker.rss_before_bytes > 0 and worker.rss_after_bytes > 0


async def test_capabilities_describe_limits_and_versions(stub, zako_server):
    caps = await stub.Capabilities(pb.CapabilitiesRequest())
    assert caps.limits.max_source_bytes == zako_server.settings.max_source_bytes
    assert (
        caps.limits.default_timeout.ToTimedelta().total_seconds()
        == zako_server.settings.default_timeout
    )
    assert set(caps.context_kinds) == {
        pb.CONTEXT_KIND_PACKAGE,
        pb.CONTEXT_KIND_BUILD,
        pb.CONTEXT_KIND_RULE,
        pb.CONTEXT_KIND_TOOLCHAIN,
        pb.CONTEXT_KIND_CONFIG,
    }
    assert caps.priority.min < 0 < caps.priority.max
    assert "zako:core" in caps.builtin_modules
    assert caps.versions.v8.count(".") >= 2
    assert caps.isolate_reuse is True


async def test_capabilities_say_no_isolate_reuse_when_the_server_never_reuses(server_factory):
    server = server_factory(isolate_reuse="never")
    async with grpc.aio.insecure_channel(server.target) as channel:
        caps = await pb_grpc.ExecutorStub(channel).Capabilities(pb.CapabilitiesRequest())
    assert caps.isolate_reuse is False


async def test_call_deadline_caps_the_task_timeout(stub):
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await stub.Run(
            pb.RunRequest(task=task("capped", "while (true) {}", timeout=Duration(seconds=60))),
            timeout=1.0,
        )
    assert exc.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The task did not outlive its call: no worker is still busy with it.
    for _ in range(100):
        stats = await stub.Stats(pb.StatsRequest())
        if stats.pool.busy == 0:
            break
        await asyncio.sleep(0.02)
    assert stats.pool.busy == 0
    assert time.monotonic() - started < 3.0


async def test_broadcast_gc_reaches_a_busy_worker_after_its_task_without_failing_it(server_factory):
    server = server_factory(min_workers=1, max_workers=1)
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        busy = "let n = 0; for (let i = 0; i < 2e8; i++) n++; module.exports = n"
        running = asyncio.ensure_future(stub.Run(pb.RunRequest(task=task("busy", busy))))
        for _ in range(250):
            if (await stub.Stats(pb.StatsRequest())).pool.busy == 1:
                break
            await asyncio.sleep(0.02)
        gc_reply = await stub.BroadcastGC(pb.BroadcastGCRequest(), timeout=30)
        gc_answered = time.time_ns()
        outcome = await running
        assert outcome.completed.result.value_json == "200000000"
        assert [w.worker_id for w in gc_reply.workers] == [
            w.id for w in server.server.pool.workers()
        ]
        # The busy worker collected after its task, so the answer came after it finished.
        assert gc_answered >= outcome.completed.result.timings.finished_at.ToNanoseconds()


async def test_stats_show_each_worker_and_the_system(stub, zako_server):
    await stub.Run(pb.RunRequest(task=task("", "module.exports = [1, 2, 3]")))
    stats = await stub.Stats(pb.StatsRequest())
    assert len(stats.pool.workers) == stats.pool.live
    worker = stats.pool.workers[0]
    assert worker.worker_id.startswith("w") and worker.pid > 0 and worker.rss_bytes > 0
    assert any(w.tasks_run > 0 and w.last_heap.used_bytes > 0 for w in stats.pool.workers)
    system = stats.system
    assert system.effective_cpus == zako_server.settings.machine.cpus
    assert system.server_rss_bytes > 0 and system.memory_available_bytes > 0


def _error_classes(root: type) -> list[type]:
    found = []
    for sub in root.__subclasses__():
        found += [sub, *_error_classes(sub)]
    return found


def test_every_server_error_maps_to_the_same_code_in_grpc_and_google_rpc():
    """The error tree names its statuses; service.py looks them up in both generated enums.

    A misspelt or unknown name would raise KeyError/ValueError at the first rejection in
    production; the two numbers must agree because a Rejected event carries the google.rpc
    number while a unary Run carries the gRPC status.
    """
    from typing import get_args

    from google.rpc import code_pb2

    from zako_server.server import errors, service

    classes = _error_classes(errors.ZakoServerError)
    assert {cls.__name__ for cls in classes} >= {
        "TaskRejection",
        "InvalidTask",
        "DuplicateTask",
        "CannotFit",
        "Overloaded",
        "Draining",
        "QueueDeadlineExceeded",
        "TaskNotFound",
        "Unauthenticated",
        "PermissionDenied",
    }
    for cls in [errors.ZakoServerError, *classes]:
        exc = cls("boom")
        assert cls.code in get_args(errors.StatusName), cls
        assert service.rpc_code(exc) == service.status_code(exc).value[0], cls
        assert code_pb2.Code.Name(service.rpc_code(exc)) == cls.code
    # Distinct rejections must stay distinguishable on the wire.
    rejections = [cls for cls in classes if issubclass(cls, errors.TaskRejection)]
    # MessageTooLarge says RESOURCE_EXHAUSTED as gRPC's own refusal of a large message
    # does; its quota subject "max_message_bytes" (and no retry_after) tells it apart.
    # MissingBlobs says FAILED_PRECONDITION as cas.proto requires; its missing_blobs (a
    # PreconditionFailure on a unary call) tell it apart from CannotFit.
    told_apart = {errors.TaskRejection, errors.MessageTooLarge, errors.MissingBlobs}
    leaves = [cls for cls in rejections if cls not in told_apart]
    assert len({cls.code for cls in leaves}) == len(leaves)
