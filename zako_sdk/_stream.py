"""The multiplexed Submit stream under AsyncClient, and the handle of one task on it.

    submit() ──▶ outbox queue ──▶ writer task ──▶ Submit call (one bidi stream)
                                                        │ events tagged by task id
    TaskHandle ◀── resolve ◀── TaskEvents.apply ◀── reader task

Writes go through a single writer task because grpc.aio cancels the whole call when a
`write()` is interrupted; one impatient caller must not take down everyone's stream.
When the stream breaks, every task on it fails with the mapped error and the client
opens a fresh stream on the next submit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Generator
from typing import Any

import grpc

from zako_sdk._base import (
    Outcome,
    TaskEvents,
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
    LogLine,
    Result,
)

__all__ = ["OnLog", "TaskHandle"]

logger = logging.getLogger("zako_sdk")

OnLog = Callable[[LogLine], object]


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
