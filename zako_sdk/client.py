"""AsyncClient: the core of the SDK, on grpc.aio.

    submit() ──▶ outbox queue ──▶ writer task ──▶ Submit call (one bidi stream)
                                                        │ events tagged by task id
    TaskHandle ◀── resolve ◀── TaskEvents.apply ◀── reader task

One long-lived Submit stream per client carries every `submit()`/`run()`: tasks are
multiplexed by id and cancels go in-band, so a task costs one message, not a call.
Writes go through a single writer task because grpc.aio cancels the whole call when a
`write()` is interrupted; one impatient caller must not take down everyone's stream.
When the stream breaks, every task on it fails with the mapped error and the next
`submit()` opens a fresh stream. `batch()` opens a stream of its own (see there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from typing import Any, Literal, overload

import grpc

from zako_sdk._base import (
    DEFAULT_TARGET,
    Metadata,
    Outcome,
    TaskEvents,
    build_task,
    channel_options,
    metadata_tuple,
    outcome_of_run,
    unwrap,
)
from zako_sdk._proto.zako.v1 import executor_pb2 as pb
from zako_sdk._proto.zako.v1 import executor_pb2_grpc as pb_grpc
from zako_sdk.errors import (
    ClientClosed,
    InvalidTask,
    RPCError,
    Unavailable,
    ZakoError,
    map_rpc_error,
)
from zako_sdk.models import (
    USE_CLIENT_DEFAULT,
    ContextName,
    LogLine,
    Resources,
    Result,
    TaskSpec,
    UseClientDefault,
)

__all__ = ["AsyncClient", "TaskHandle"]

logger = logging.getLogger("zako_sdk")

OnLog = Callable[[LogLine], object]


@contextlib.contextmanager
def _translate(task_id: str | None = None) -> Iterator[None]:
    """Where every unary call's grpc.RpcError becomes a ZakoError (httpx-style mapping)."""
    try:
        yield
    except grpc.RpcError as exc:
        raise map_rpc_error(exc, task_id=task_id) from exc


class TaskHandle:
    """A task in flight on a Submit stream.

        handle = await client.submit("module.exports = () => 42")
        print(handle.task_id, handle.logs)
        result = await handle          # or: await handle.result()
        await other.cancel("not needed any more")
    """

    def __init__(self, task_id: str, stream: _SubmitStream, on_log: OnLog | None) -> None:
        self._stream = stream
        self._events = TaskEvents(task_id, on_log)
        # The future holds the outcome, never an exception: a handle nobody awaits then
        # produces no "exception was never retrieved" noise, and batch() can inspect it.
        self._future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

    @property
    def task_id(self) -> str:
        return self._events.task_id

    @property
    def logs(self) -> list[LogLine]:
        """Lines the task printed so far (a live list, appended as they arrive)."""
        return self._events.logs

    @property
    def worker_id(self) -> str | None:
        """The worker running the task, once it started."""
        return self._events.worker_id

    def done(self) -> bool:
        return self._future.done()

    async def outcome(self) -> Outcome:
        """The Result or the error, without raising; shielded so that a cancelled waiter
        does not cancel the handle for everyone else."""
        return await asyncio.shield(self._future)

    async def result(self) -> Result:
        """Wait for the task; its Result, or raise TaskFailed/TaskCancelled/…."""
        return unwrap(await self.outcome())

    def __await__(self) -> Generator[Any, None, Result]:
        return self.result().__await__()

    async def cancel(self, reason: str = "") -> None:
        """Ask the server to cancel the task (in-band, on its stream). Returns at once; the
        handle then fails with TaskCancelled, unless the task finished first."""
        self._cancel_nowait(reason)

    def _cancel_nowait(self, reason: str) -> None:
        if not self._future.done():
            self._stream.cancel(self.task_id, reason)

    def _resolve(self, outcome: Outcome) -> None:
        if not self._future.done():
            self._future.set_result(outcome)

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"<TaskHandle {self.task_id} {state}>"


class _SubmitStream:
    """One Submit call with its writer and reader tasks and the handles in flight on it."""

    def __init__(self, stub: pb_grpc.ExecutorStub, metadata: tuple[tuple[str, str], ...],
                 max_in_flight: int | None) -> None:
        self._call = stub.Submit(metadata=metadata)
        self._outbox: asyncio.Queue[pb.SubmitRequest | None] = asyncio.Queue()
        self._handles: dict[str, TaskHandle] = {}
        self._slots = asyncio.Semaphore(max_in_flight) if max_in_flight else None
        self.error: ZakoError | None = None  # set once: why the stream is no longer usable
        self._writer = asyncio.create_task(self._write_loop(), name="zako-submit-writer")
        self._reader = asyncio.create_task(self._read_loop(), name="zako-submit-reader")

    @property
    def closed(self) -> bool:
        return self.error is not None

    async def submit(self, task: pb.Task, on_log: OnLog | None) -> TaskHandle:
        if self._slots is not None:
            await self._slots.acquire()
        try:
            if self.error is not None:
                raise self.error
            if task.id in self._handles:
                # Events are routed by id, so two live tasks with one id cannot be told apart.
                raise InvalidTask(f"task id {task.id!r} is already in flight on this stream",
                                  task_id=task.id, code=grpc.StatusCode.ALREADY_EXISTS,
                                  field="task.id")
        except BaseException:
            self._release()
            raise
        handle = TaskHandle(task.id, self, on_log)
        self._handles[task.id] = handle
        self._outbox.put_nowait(pb.SubmitRequest(task=task))
        return handle

    def cancel(self, task_id: str, reason: str) -> None:
        if self.error is None and task_id in self._handles:
            request = pb.SubmitRequest(cancel=pb.CancelTask(task_id=task_id, reason=reason))
            self._outbox.put_nowait(request)

    def _release(self) -> None:
        if self._slots is not None:
            self._slots.release()

    async def _write_loop(self) -> None:
        try:
            while (request := await self._outbox.get()) is not None:
                await self._call.write(request)
            await self._call.done_writing()
        except (grpc.RpcError, asyncio.InvalidStateError):
            pass  # the call is over; the reader learns the status and reports it
        except Exception as exc:
            error = RPCError(f"writing to the Submit stream failed: {exc!r}",
                             code=grpc.StatusCode.INTERNAL)
            error.__cause__ = exc
            self._fail(error)
            self._call.cancel()

    async def _read_loop(self) -> None:
        try:
            while True:
                event = await self._call.read()
                if event is grpc.aio.EOF:
                    self._fail(Unavailable("the server ended the Submit stream",
                                           code=grpc.StatusCode.UNAVAILABLE))
                    return
                self._dispatch(event)
        except grpc.RpcError as exc:
            self._fail(map_rpc_error(exc))
        except asyncio.CancelledError:
            # The call was cancelled locally (aclose, channel closed) or this task was.
            self._fail(Unavailable("the Submit stream was cancelled",
                                   code=grpc.StatusCode.CANCELLED))
            raise

    def _dispatch(self, event: pb.SubmitResponse) -> None:
        handle = self._handles.get(event.task_id)
        if handle is None:
            return  # e.g. a late event for a task whose id we never sent
        try:
            outcome = handle._events.apply(event)
        except Exception:
            # Only on_log can raise here; a bad callback must not kill everyone's stream.
            logger.exception("on_log callback of task %s raised", event.task_id)
            return
        if outcome is not None:
            del self._handles[event.task_id]
            handle._resolve(outcome)
            self._release()

    def _fail(self, error: ZakoError) -> None:
        if self.error is not None:
            return
        self.error = error
        self._writer.cancel()
        handles, self._handles = list(self._handles.values()), {}
        for handle in handles:
            handle._resolve(error)
            self._release()

    async def finish(self, grace: float = 5.0) -> None:
        """Half-close and let the server end the stream; then make sure it is gone."""
        if self.error is None:
            self._outbox.put_nowait(None)
            await asyncio.wait([self._reader], timeout=grace)
        await self.aclose(ClientClosed("the stream was finished"))

    async def aclose(self, error: ZakoError) -> None:
        """Fail what is still in flight with `error`; the server then cancels those tasks."""
        self._fail(error)
        self._call.cancel()
        await asyncio.wait([self._reader, self._writer])


class AsyncClient:
    """Runs JavaScript on a Zako server; the asyncio core of the SDK.

        async with AsyncClient("127.0.0.1:50051") as client:
            result = await client.run("module.exports = (x) => x + 1", input=41)
            assert result.value == 42

    `timeout` is the default task timeout in seconds (None: the server's default);
    `call_timeout` bounds the small unary calls (cancel, stats, gc, capabilities).
    `max_in_flight` caps the tasks in flight per stream on this side: `submit()` waits for
    a slot (None: no cap here; the server rejects past its own `max_tasks_per_stream`).
    The gRPC channel is created on first use and belongs to that event loop.
    """

    def __init__(self, target: str = DEFAULT_TARGET, *, timeout: float | None = None,
                 call_timeout: float | None = 60.0, metadata: Metadata | None = None,
                 credentials: grpc.ChannelCredentials | None = None,
                 options: Iterable[tuple[str, Any]] | None = None,
                 max_in_flight: int | None = None) -> None:
        self.target = target
        self.timeout = timeout
        self.call_timeout = call_timeout
        self._metadata = metadata_tuple(metadata)
        self._credentials = credentials
        self._options = channel_options(options)
        self._max_in_flight = max_in_flight
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.ExecutorStub | None = None
        self._shared: _SubmitStream | None = None
        self._streams: set[_SubmitStream] = set()
        self._closed = False

    def _get_stub(self) -> pb_grpc.ExecutorStub:
        if self._closed:
            raise ClientClosed("this client is closed")
        if self._stub is None:
            if self._credentials is None:
                self._channel = grpc.aio.insecure_channel(self.target, options=self._options)
            else:
                self._channel = grpc.aio.secure_channel(self.target, self._credentials,
                                                        options=self._options)
            self._stub = pb_grpc.ExecutorStub(self._channel)
        return self._stub

    def _open_stream(self) -> _SubmitStream:
        stream = _SubmitStream(self._get_stub(), self._metadata, self._max_in_flight)
        self._streams.add(stream)
        return stream

    def _shared_stream(self) -> _SubmitStream:
        if self._shared is None or self._shared.closed:
            if self._shared is not None:
                self._streams.discard(self._shared)
            self._shared = self._open_stream()
        return self._shared

    async def _submit(self, spec: TaskSpec, on_log: OnLog | None = None) -> TaskHandle:
        task = build_task(spec, default_timeout=self.timeout)
        return await self._shared_stream().submit(task, on_log)

    async def _run(self, spec: TaskSpec, on_log: OnLog | None = None) -> Result:
        handle = await self._submit(spec, on_log)
        try:
            return await handle
        except asyncio.CancelledError:
            handle._cancel_nowait("the caller stopped waiting")
            raise

    async def _run_unary(self, spec: TaskSpec) -> Result:
        task = build_task(spec, default_timeout=self.timeout)
        with _translate(task_id=task.id):
            response = await self._get_stub().Run(pb.RunRequest(task=task),
                                                  metadata=self._metadata)
        return unwrap(outcome_of_run(response))

    async def run(self, source: str, *, input: Any = None, context: ContextName | str = "build",
                  timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,
                  modules: Mapping[str, str] | None = None, entry_name: str | None = None,
                  priority: int = 0, labels: Mapping[str, str] | None = None,
                  resources: Resources | Mapping[str, Any] | None = None,
                  system_access: bool = False, task_id: str | None = None,
                  on_log: OnLog | None = None) -> Result:
        """Run one task on the shared stream and return its Result; raise if it fails.

            result = await client.run("module.exports = (x) => x * 2", input=21)

        Cancelling the awaiting coroutine cancels the task on the server.
        """
        return await self._run(TaskSpec(
            source, input=input, context=context, timeout=timeout, modules=modules,
            entry_name=entry_name, priority=priority, labels=labels, resources=resources,
            system_access=system_access, task_id=task_id), on_log)

    async def run_unary(self, source: str, *, input: Any = None,
                        context: ContextName | str = "build",
                        timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,
                        modules: Mapping[str, str] | None = None, entry_name: str | None = None,
                        priority: int = 0, labels: Mapping[str, str] | None = None,
                        resources: Resources | Mapping[str, Any] | None = None,
                        system_access: bool = False, task_id: str | None = None) -> Result:
        """Like `run()`, through the unary Run RPC (no stream; logs arrive with the result).

            result = await client.run_unary("module.exports = 1")
        """
        return await self._run_unary(TaskSpec(
            source, input=input, context=context, timeout=timeout, modules=modules,
            entry_name=entry_name, priority=priority, labels=labels, resources=resources,
            system_access=system_access, task_id=task_id))

    async def submit(self, source: str, *, input: Any = None,
                     context: ContextName | str = "build",
                     timeout: float | UseClientDefault | None = USE_CLIENT_DEFAULT,
                     modules: Mapping[str, str] | None = None, entry_name: str | None = None,
                     priority: int = 0, labels: Mapping[str, str] | None = None,
                     resources: Resources | Mapping[str, Any] | None = None,
                     system_access: bool = False, task_id: str | None = None,
                     on_log: OnLog | None = None) -> TaskHandle:
        """Send a task on the shared stream now and return its handle without waiting.

            handle = await client.submit("module.exports = () => 1", on_log=print)
            result = await handle

        `on_log` is called with each LogLine as it arrives; it must not block.
        """
        return await self._submit(TaskSpec(
            source, input=input, context=context, timeout=timeout, modules=modules,
            entry_name=entry_name, priority=priority, labels=labels, resources=resources,
            system_access=system_access, task_id=task_id), on_log)

    @overload
    async def batch(self, tasks: Iterable[TaskSpec], *,
                    return_exceptions: Literal[False] = ...) -> list[Result]: ...

    @overload
    async def batch(self, tasks: Iterable[TaskSpec], *,
                    return_exceptions: bool) -> list[Result | ZakoError]: ...

    async def batch(self, tasks: Iterable[TaskSpec], *,
                    return_exceptions: bool = False) -> list[Result] | list[Result | ZakoError]:
        """Run many tasks over one Submit stream; results in input order.

            results = await client.batch(TaskSpec(src, input=n) for n in range(200))

        With `return_exceptions=False` the first failure (in input order, among those
        known when one arrives) is raised and the rest of the batch is cancelled; with
        True, each failed task's error takes its place in the list.

        The batch gets a stream of its own, so that giving up on it is one act: closing
        that stream makes the server cancel whatever of the batch is still queued or
        running, without touching tasks submitted elsewhere on this client.
        """
        specs = list(tasks)
        if not specs:
            return []
        builds = [build_task(spec, default_timeout=self.timeout) for spec in specs]
        stream = self._open_stream()
        settled = asyncio.Event()
        remaining = len(specs)

        def on_done(future: asyncio.Future[Outcome]) -> None:
            nonlocal remaining
            remaining -= 1
            if remaining == 0 or (not return_exceptions
                                  and isinstance(future.result(), ZakoError)):
                settled.set()

        handles: list[TaskHandle] = []
        try:
            for task in builds:
                if settled.is_set():
                    break
                handle = await stream.submit(task, None)
                handle._future.add_done_callback(on_done)
                handles.append(handle)
            await settled.wait()
            outcomes = [h._future.result() for h in handles if h.done()]
            if return_exceptions:
                return outcomes
            return [unwrap(outcome) for outcome in outcomes]
        finally:
            self._streams.discard(stream)
            if all(h.done() for h in handles) and len(handles) == len(builds):
                await stream.finish()
            else:
                await stream.aclose(ClientClosed("the batch was abandoned"))

    async def _unary(self, method: str, request: Any) -> Any:
        with _translate():
            return await getattr(self._get_stub(), method)(
                request, timeout=self.call_timeout, metadata=self._metadata)

    async def cancel(self, task_id: str, reason: str = "") -> pb.CancelResponse:
        """Cancel a queued or running task by id (unary Cancel; RPCError NOT_FOUND if none).

            await client.cancel("3f2a…", "superseded")
        """
        return await self._unary("Cancel", pb.CancelRequest(task_id=task_id, reason=reason))

    async def stats(self) -> pb.StatsResponse:
        """A snapshot of the pool, queue and task counters. `(await client.stats()).pool.busy`"""
        return await self._unary("Stats", pb.StatsRequest())

    async def gc(self) -> pb.BroadcastGCResponse:
        """Collect garbage on every worker. `(await client.gc()).total_freed_bytes`"""
        return await self._unary("BroadcastGC", pb.BroadcastGCRequest())

    async def capabilities(self) -> pb.CapabilitiesResponse:
        """Limits, context kinds, priorities, versions. `(await client.capabilities()).limits`"""
        return await self._unary("Capabilities", pb.CapabilitiesRequest())

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Close the client: tasks still in flight fail with ClientClosed and the server
        cancels them. Idempotent."""
        if self._closed:
            return
        self._closed = True
        streams, self._streams, self._shared = list(self._streams), set(), None
        for stream in streams:
            await stream.aclose(ClientClosed("the client was closed"))
        if self._channel is not None:
            await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        if self._closed:
            raise ClientClosed("this client is closed")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncClient {self.target}{' closed' if self._closed else ''}>"
