"""AsyncClient: the core of the SDK, on grpc.aio.

    submit() ──▶ outbox queue ──▶ writer task ──▶ Submit call (one bidi stream)
                                                        │ events tagged by task id
    TaskHandle ◀── resolve ◀── TaskEvents.apply ◀── reader task

One long-lived Submit stream per client carries every `submit()`/`run()`: tasks are
multiplexed by id and cancels go in-band, so a task costs one message, not a call.
The stream itself and the task handles live in `_stream.py`. `batch()` opens a stream
of its own (see there).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal, overload

import grpc

from zako_sdk._base import (
    DEFAULT_TARGET,
    Metadata,
    Outcome,
    build_task,
    channel_options,
    metadata_tuple,
    outcome_of_run,
    unwrap,
)
from zako_sdk._proto.zako.v1 import executor_pb2 as pb
from zako_sdk._proto.zako.v1 import executor_pb2_grpc as pb_grpc
from zako_sdk._stream import OnLog, TaskHandle, _SubmitStream
from zako_sdk.errors import (
    ClientClosed,
    ZakoError,
    map_rpc_error,
)
from zako_sdk.models import (
    USE_CLIENT_DEFAULT,
    ContextName,
    Resources,
    Result,
    TaskSpec,
    UseClientDefault,
)

__all__ = ["AsyncClient", "TaskHandle"]



@contextlib.contextmanager
def _translate(task_id: str | None = None) -> Iterator[None]:
    """Where every unary call's grpc.RpcError becomes a ZakoError (httpx-style mapping)."""
    try:
        yield
    except grpc.RpcError as exc:
        raise map_rpc_error(exc, task_id=task_id) from exc


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
