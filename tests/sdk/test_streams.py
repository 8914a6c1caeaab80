"""Stream mechanics of both clients against a scripted fake server.

The real server decides *what* happens to a task; these tests need to decide it
themselves (break the stream now, hang until cancelled, reject with this code), so a
small fake Executor plays a script: each task's source is a JSON directive.
Tests run for both clients through `Face`, which makes the sync one awaitable.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from zako_sdk import (
    AsyncClient,
    Client,
    ClientClosed,
    InvalidTask,
    Overloaded,
    RPCError,
    SyncTaskHandle,
    TaskCancelled,
    TaskFailed,
    TaskSpec,
    Unavailable,
)
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc

END = object()


def script(do: str, **more: Any) -> str:
    return json.dumps({"do": do, **more})


class FakeExecutor(pb_grpc.ExecutorServicer):
    """Plays each task's script. Scripts may also say `refuse_on` (names of fakes that
    reject the task for capacity: `refuse_code`, default 14 draining, `retry_ms`) and
    `refuse_times` (reject its first N arrivals here), to drive the client's retries."""

    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.streams_opened = 0
        self.in_band_cancels: list[tuple[str, str]] = []
        self.unary_cancels: list[str] = []
        self.hung: dict[str, asyncio.Future[str]] = {}
        self.received: list[str] = []  # ids of the tasks that reached this fake, in order
        self.completed = 0
        self.tenants: list[str | None] = []
        self.fresh: dict[str, bool] = {}  # task id -> Task.fresh_isolate as received

    def refusal(self, task: pb.Task) -> pb.Rejected | None:
        d = json.loads(task.source)
        times = d.get("refuse_times", 0)
        if self.name in d.get("refuse_on", ()) or self.received.count(task.id) <= times:
            rejected = pb.Rejected(code=d.get("refuse_code", 14), message="refused by " + self.name)
            if "retry_ms" in d:
                rejected.retry_after.FromMilliseconds(d["retry_ms"])
            return rejected
        return None

    def note(self, task: pb.Task, context: Any) -> None:
        self.received.append(task.id)
        self.fresh[task.id] = task.fresh_isolate
        self.tenants.append(dict(context.invocation_metadata()).get("x-zako-tenant"))

    async def play(self, task: pb.Task, emit: Any) -> pb.SubmitResponse | None:
        """Emit the progress events of `task`; return its terminal event, None to break."""
        d = json.loads(task.source)
        refused = self.refusal(task)
        if refused is not None:
            return pb.SubmitResponse(task_id=task.id, rejected=refused)
        emit(pb.SubmitResponse(task_id=task.id, accepted=pb.Accepted()))
        emit(pb.SubmitResponse(task_id=task.id, started=pb.Started(worker_id="w1")))
        for message in d.get("logs", []):
            emit(
                pb.SubmitResponse(
                    task_id=task.id, log=pb.LogLine(level=pb.LOG_LEVEL_INFO, message=message)
                )
            )
        await asyncio.sleep(d.get("sleep", 0))
        do = d["do"]
        if do == "echo":
            self.completed += 1
            # A server that reuses isolates: warm unless the task asked for a fresh one.
            value = pb.Result(
                value_json=task.input_json or "null",
                timings=pb.Timings(warm_isolate=not task.fresh_isolate),
            )
            return pb.SubmitResponse(task_id=task.id, completed=pb.Completed(result=value))
        if do == "throw":
            error = pb.JsError(
                name="Error",
                message=d["message"],
                module="main.js",
                line=2,
                column=9,
                stack=f"Error: {d['message']}\n    at main.js:2:9",
            )
            failed = pb.Failed(reason=pb.FAILURE_REASON_JS_ERROR, error=error)
            return pb.SubmitResponse(task_id=task.id, failed=failed)
        if do == "reject":
            rejected = pb.Rejected(code=d["code"], message="no", field="task.priority")
            rejected.retry_after.FromMilliseconds(d.get("retry_ms", 0))
            return pb.SubmitResponse(task_id=task.id, rejected=rejected)
        if do == "hang":
            self.hung[task.id] = asyncio.get_running_loop().create_future()
            reason = await self.hung[task.id]
            return pb.SubmitResponse(task_id=task.id, cancelled=pb.Cancelled(reason=reason))
        return None  # "break"

    async def Submit(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        self.streams_opened += 1
        out: asyncio.Queue[Any] = asyncio.Queue()

        async def run_one(task: pb.Task) -> None:
            terminal = await self.play(task, out.put_nowait)
            out.put_nowait(terminal)

        async def read() -> None:
            tasks = []
            async for request in request_iterator:
                if request.HasField("task"):
                    self.note(request.task, context)
                    tasks.append(asyncio.create_task(run_one(request.task)))
                else:
                    cancel = request.cancel
                    self.in_band_cancels.append((cancel.task_id, cancel.reason))
                    if not self.hung[cancel.task_id].done():
                        self.hung[cancel.task_id].set_result(cancel.reason)
            await asyncio.gather(*tasks)
            out.put_nowait(END)

        reader = asyncio.create_task(read())
        try:
            while (event := await out.get()) is not END:
                if event is None:
                    await context.abort(grpc.StatusCode.UNAVAILABLE, "going away")
                yield event
        finally:
            for hung in self.hung.values():  # what a real server does when a stream goes
                if not hung.done():
                    hung.set_result("stream closed")
            reader.cancel()

    async def Run(self, request: pb.RunRequest, context: Any) -> pb.RunResponse:
        d = json.loads(request.task.source)
        self.note(request.task, context)
        if d["do"] == "reject":
            await context.abort(
                grpc.StatusCode(next(c for c in grpc.StatusCode if c.value[0] == d["code"]).value),
                "no",
            )
        refused = self.refusal(request.task)
        if refused is not None:  # as the real server does it: the status, with RetryInfo
            detail = any_pb2.Any()
            detail.Pack(error_details_pb2.RetryInfo(retry_delay=refused.retry_after))
            await context.abort_with_status(
                rpc_status.to_status(
                    status_pb2.Status(code=refused.code, message=refused.message, details=[detail])
                )
            )
        logs: list[pb.LogLine] = []
        terminal = await self.play(
            request.task, lambda e: logs.extend([e.log] if e.HasField("log") else [])
        )
        assert terminal is not None
        kind = terminal.WhichOneof("event")
        response = pb.RunResponse(task_id=request.task.id, logs=logs)
        getattr(response, kind).CopyFrom(getattr(terminal, kind))
        return response

    async def Cancel(self, request: pb.CancelRequest, context: Any) -> pb.CancelResponse:
        self.unary_cancels.append(request.task_id)
        hung = self.hung.get(request.task_id)
        if hung is None or hung.done():
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no task {request.task_id}")
        hung.set_result(request.reason)
        return pb.CancelResponse(previous_state=pb.TASK_STATE_RUNNING)

    async def Capabilities(
        self,
        request: pb.CapabilitiesRequest,
        context: Any,
    ) -> pb.CapabilitiesResponse:
        return pb.CapabilitiesResponse(isolate_reuse=True)

    async def Stats(self, request: pb.StatsRequest, context: Any) -> pb.StatsResponse:
        return pb.StatsResponse(
            pool=pb.PoolStats(max_workers=2),
            tasks=pb.TaskCounters(completed=self.completed),
            versions=pb.VersionInfo(server=self.name),
        )


class FakeServer:
    """A grpc.aio server with FakeExecutor on a private loop thread (tests may block)."""

    def __init__(self, name: str = "fake") -> None:
        self.loop = asyncio.new_event_loop()
        self.executor = FakeExecutor(name)
        started: Future[int] = Future()

        async def boot() -> None:
            self.server = grpc.aio.server()
            pb_grpc.add_ExecutorServicer_to_server(self.executor, self.server)
            port = self.server.add_insecure_port("127.0.0.1:0")
            await self.server.start()
            started.set_result(port)

        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(boot(), self.loop)
        self.target = f"127.0.0.1:{started.result(10)}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(None), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


class Face:
    """Either client behind one awaitable API; the sync client's calls go to a thread."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.target, name)
        if not callable(attr) or not isinstance(self.target, (Client, SyncTaskHandle)):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            result = await asyncio.to_thread(attr, *args, **kwargs)
            return Face(result) if isinstance(result, SyncTaskHandle) else result

        return call


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.stop()


@pytest.fixture(params=["async", "sync"])
async def client(request: pytest.FixtureRequest, fake: FakeServer) -> AsyncIterator[Any]:
    if request.param == "async":
        async with AsyncClient(fake.target) as inner:
            yield Face(inner)
    else:
        inner_sync = Client(fake.target)
        yield Face(inner_sync)
        await asyncio.to_thread(inner_sync.close)


async def test_run_returns_the_value_and_logs(client):
    result = await client.run(script("echo", logs=["a", "b"]), input={"x": [1, 2]})
    assert result.value == {"x": [1, 2]}
    assert [line.message for line in result.logs] == ["a", "b"]
    assert result.worker_id == "w1"


async def test_fresh_isolate_is_sent_and_warm_isolate_read_back_on_every_path(client, fake):
    fresh = await client.run(script("echo"), fresh_isolate=True)
    warm = await client.run(script("echo"))
    assert fake.executor.fresh[fresh.task_id] is True and fresh.timings.warm_isolate is False
    assert fake.executor.fresh[warm.task_id] is False and warm.timings.warm_isolate is True
    unary = await client.run_unary(script("echo"), fresh_isolate=True)
    assert fake.executor.fresh[unary.task_id] and unary.timings.warm_isolate is False
    handle = await client.submit(script("echo"), fresh_isolate=True)
    assert (await handle.result()).timings.warm_isolate is False
    batch = await client.batch(
        [TaskSpec(script("echo"), fresh_isolate=True), TaskSpec(script("echo"))]
    )
    assert [result.timings.warm_isolate for result in batch] == [False, True]
    assert (await client.capabilities()).isolate_reuse is True


async def test_failure_raises_task_failed_with_the_js_error(client):
    with pytest.raises(TaskFailed) as info:
        await client.run(script("throw", message="boom"))
    assert info.value.js_error.line == 2 and "at main.js:2:9" in str(info.value)


async def test_a_handle_names_its_worker_and_returns_a_failure_as_its_outcome(client):
    handle = await client.submit(script("throw", message="kept"))
    outcome = await handle.outcome()  # returned, not raised
    assert isinstance(outcome, TaskFailed) and outcome.js_error.message == "kept"
    assert handle.worker_id == "w1"
    with pytest.raises(TaskFailed, match="kept"):
        await handle.result()


async def test_cancel_goes_in_band_and_fails_the_handle(client, fake):
    handle = await client.submit(script("hang"))
    await asyncio.sleep(0.05)
    await handle.cancel("enough")
    with pytest.raises(TaskCancelled, match="enough"):
        await handle.result()
    assert (handle.task_id, "enough") in fake.executor.in_band_cancels


async def test_rejections_map_to_their_classes(client):
    with pytest.raises(InvalidTask) as info:
        await client.run(script("reject", code=3))
    assert info.value.field == "task.priority"
    with pytest.raises(Overloaded) as over:
        await client.run(script("reject", code=8, retry_ms=150))  # after 2 retries
    assert over.value.retry_after == 0.15


async def test_a_broken_stream_fails_every_pending_task_then_recovers(client, fake):
    opened = fake.executor.streams_opened
    hanging = [await client.submit(script("hang")) for _ in range(3)]
    await client.submit(script("break", sleep=0.05))
    for handle in hanging:
        with pytest.raises(Unavailable, match="going away"):
            await handle.result()
    assert (await client.run(script("echo"), input=1)).value == 1
    # One stream opened lazily by the first submit, one more by the submit after the break.
    assert fake.executor.streams_opened == opened + 2


async def test_batch_keeps_input_order(client, fake):
    opened = fake.executor.streams_opened
    specs = [TaskSpec(script("echo", sleep=0.002 * (20 - n)), input=n) for n in range(20)]
    results = await client.batch(specs)
    assert [r.value for r in results] == list(range(20))
    assert fake.executor.streams_opened == opened + 1  # its own stream


async def test_batch_return_exceptions_puts_errors_in_place(client):
    specs = [
        TaskSpec(script("echo"), input=1),
        TaskSpec(script("throw", message="x")),
        TaskSpec(script("reject", code=8)),
    ]
    first, second, third = await client.batch(specs, return_exceptions=True)
    assert first.value == 1
    assert isinstance(second, TaskFailed) and isinstance(third, Overloaded)


async def test_batch_raises_the_first_failure_and_cancels_the_rest(client, fake):
    specs = [TaskSpec(script("hang"), task_id=f"rest-{n}") for n in range(3)]
    with pytest.raises(TaskFailed, match="first"):
        await client.batch([*specs, TaskSpec(script("throw", message="first", sleep=0.05))])
    await asyncio.sleep(0.1)
    assert all(fake.executor.hung[f"rest-{n}"].result() == "stream closed" for n in range(3))


async def test_on_log_sees_lines_as_they_arrive_and_may_fail(client):
    seen: list[str] = []

    def on_log(line):
        seen.append(line.message)
        raise RuntimeError("a bad callback")  # logged, and the stream carries on

    result = await client.run(script("echo", logs=["one", "two"]), on_log=on_log)
    assert seen == ["one", "two"] and len(result.logs) == 2


async def test_run_unary_maps_status_codes_to_rejections(client):
    assert (await client.run_unary(script("echo", logs=["l"]), input=5)).value == 5
    with pytest.raises(InvalidTask):
        await client.run_unary(script("reject", code=3))
    with pytest.raises(Overloaded):
        await client.run_unary(script("reject", code=8))


async def test_unary_cancel_and_stats(client):
    handle = await client.submit(script("hang"))
    await asyncio.sleep(0.05)
    assert (await client.cancel(handle.task_id, "by id")).previous_state == pb.TASK_STATE_RUNNING
    with pytest.raises(TaskCancelled):
        await handle.result()
    with pytest.raises(RPCError) as info:
        await client.cancel("nope")
    assert info.value.code is grpc.StatusCode.NOT_FOUND
    assert (await client.stats()).pool.max_workers == 2


async def test_duplicate_id_in_flight_is_refused_before_sending(client):
    handle = await client.submit(script("hang"), task_id="dup")
    with pytest.raises(InvalidTask, match="already in flight"):
        await client.submit(script("echo"), task_id="dup")
    await handle.cancel()


def unused_target() -> str:
    """An address nothing listens on (the port was free a moment ago)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


async def test_unreachable_server_is_unavailable_on_both_paths():
    async with AsyncClient(unused_target()) as client:
        with pytest.raises(Unavailable):
            await client.run_unary(script("echo"))
        with pytest.raises(Unavailable):
            await client.run(script("echo"))
    with Client(unused_target()) as sync, pytest.raises(Unavailable):
        await asyncio.to_thread(sync.run, script("echo"))


async def test_closing_fails_pending_tasks_and_refuses_new_calls(fake):
    client = AsyncClient(fake.target)
    handle = await client.submit(script("hang"))
    await client.aclose()
    with pytest.raises(ClientClosed):
        await handle.result()
    # A caller's bug, so it is also what `except RuntimeError` expects of a closed client.
    with pytest.raises(RuntimeError, match="closed"):
        await client.run(script("echo"))
    sync = Client(fake.target)
    sync.close()
    with pytest.raises(ClientClosed):
        sync.stats()


async def test_cancelling_the_caller_cancels_the_task(fake):
    async with AsyncClient(fake.target) as client:
        waiter = asyncio.create_task(client.run(script("hang"), task_id="abandoned"))
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await asyncio.sleep(0.05)
        assert ("abandoned", "the caller stopped waiting") in fake.executor.in_band_cancels


async def test_finished_and_abandoned_tasks_leave_no_handles_behind(fake):
    # Handles forget themselves when they resolve (no done-callback), and run() awaits
    # its future without shield(): a cancelled caller must still be forgotten.
    async with AsyncClient(fake.target) as client:
        await asyncio.gather(*(client.run(script("echo"), input=n) for n in range(20)))
        waiter = asyncio.create_task(client.run(script("hang"), task_id="left"))
        await asyncio.sleep(0.05)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert client._shared.handles == {}
        await asyncio.sleep(0.05)
        assert ("left", "the caller stopped waiting") in fake.executor.in_band_cancels
        assert (await client.run(script("echo"), input=1, task_id="left")).value == 1


def test_sync_result_timeout_leaves_the_task_running(fake):
    with Client(fake.target) as client:
        handle = client.submit(script("hang"))
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            handle.result(timeout=0.1)
        assert time.monotonic() - started < 5 and not handle.done()
        handle.cancel("done waiting")
        with pytest.raises(TaskCancelled):
            handle.result(timeout=5)


async def test_max_in_flight_makes_submit_wait_for_a_slot(fake):
    async with AsyncClient(fake.target, max_in_flight=2) as client:
        first = await client.submit(script("hang"))
        await client.submit(script("echo"))  # finishes soon and frees its slot
        await client.submit(script("hang"))
        third_hang = asyncio.create_task(client.submit(script("hang")))
        await asyncio.sleep(0.1)
        assert not third_hang.done()  # two hung tasks hold both slots
        await first.cancel()
        handle = await asyncio.wait_for(third_hang, 5)
        await handle.cancel()
