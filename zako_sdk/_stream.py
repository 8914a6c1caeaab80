"""The multiplexed Submit stream under AsyncClient, and the handle of one task on it.

    place() ──▶ outbox deque ──▶ writer task ──▶ Submit call (one bidi stream per replica)
                                                        │ events tagged by task id
    TaskHandle ◀── _ended ◀── TaskEvents.apply ◀── reader task
         │  rejected for capacity, or never written
         └──▶ owner.retry ──▶ another attempt, maybe on another replica (_replicas.py)

Writes go through a single writer task because grpc.aio cancels the whole call when a
`write()` is interrupted; one impatient caller must not take down everyone's stream.
When the stream breaks, every task on it ends with the mapped error, except those the
writer had not yet taken from the outbox: they never left this client, so they may be
retried elsewhere. The client opens a fresh stream on the next submit.

A handle outlives its attempts: its future resolves once, with the final outcome, and
its in-band cancel always goes to the stream (so the replica) of the current attempt.

This is the per-task hot path (issue #7). At ~150 trivial tasks/s most of the client's
CPU is gRPC's: one write and three reads per task (accepted, started, completed), each a
wake-up of the event loop, which a bare grpc.aio client pays as well (`run()` now asks
for the terminal event only: one read). What is ours is
kept to the minimum: no asyncio.Queue (a deque and one wake-up future), no shield() or
done-callbacks between the reader and a `run()` caller (each costs a loop turn per
task), and the request built once per task.

Against a server that says it can, the tasks queued together go out as one TaskBatch
message and the stream asks for EventBatch replies, which the reader unpacks: one gRPC
write and read for many tasks (#16; the wire's shape is in _wire.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from zako_sdk._outcomes import Outcome, TaskEvents, unwrap
from zako_sdk._retries import never_ran
from zako_sdk._wire import OPTIONS, batches, coalesce
from zako_sdk.errors import (
    ClientClosed,
    RPCError,
    TaskCancelled,
    Unavailable,
    ZakoError,
    map_rpc_error,
)
from zako_sdk.models import (
    LogLine,
    Result,
)
from zako_sdk.pacing import Pace
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from zako_sdk._replicas import Lane

__all__ = ["OnLog", "TaskHandle"]

logger = logging.getLogger("zako_sdk")

OnLog = Callable[[LogLine], object]


class _Owner(Protocol):
    """What places a handle's attempts and decides on retries (a StreamSet)."""

    def retry(self, handle: TaskHandle, outcome: Outcome, *, sent: bool) -> bool: ...

    def forget(self, handle: TaskHandle) -> None: ...


class TaskHandle:
    """A task in flight on a Submit stream.

        handle = await client.submit("module.exports = () => 42")
        print(handle.task_id, handle.replica, handle.logs)
        result = await handle          # or: await handle.result()
        await other.cancel("not needed any more")

    If a replica turns the task away for capacity, the client may send it again (same
    id), possibly to another replica; the handle follows it and resolves once.
    """

    def __init__(self, task: pb.Task, on_log: OnLog | None, owner: _Owner | None = None) -> None:
        self._task = task
        self._request: pb.SubmitRequest | None = None  # built on first send, resent on retries
        self._on_log = on_log
        self._owner = owner
        self._events = TaskEvents(task.id, on_log)
        # The future holds the outcome, never an exception: a handle nobody awaits then
        # produces no "exception was never retrieved" noise, and batch() can inspect it.
        self._future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._stream: _SubmitStream | None = None  # the current attempt's, while it lasts
        self._lane: Lane | None = None  # where the current (or last) attempt went
        self._attempts = 0
        self._cancel_reason: str | None = None
        self._waiting: asyncio.Task[None] | None = None  # a retry waiting for its turn

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

    @property
    def replica(self) -> str | None:
        """The target the task was last sent to (with several replicas, the one that has it)."""
        return None if self._lane is None else self._lane.replica.target

    @property
    def attempts(self) -> int:
        """How many times the task was sent (more than 1 after retries)."""
        return self._attempts

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

    async def _wait(self) -> Result:
        """The Result for `run()`, which is the handle's only waiter.

        It awaits the future itself: shield() would cost a second future and an extra
        event-loop turn per task. Cancelling the caller then cancels the future too, so
        `_abandon` sends the in-band cancel that `_cancel_nowait` would have sent.
        """
        try:
            outcome = await self._future
        except asyncio.CancelledError:
            self._abandon("the caller stopped waiting")
            raise
        return unwrap(outcome)

    async def cancel(self, reason: str = "") -> None:
        """Ask the server to cancel the task (in-band, on its stream). Returns at once; the
        handle then fails with TaskCancelled, unless the task finished first."""
        self._cancel_nowait(reason)

    def _cancel_nowait(self, reason: str) -> None:
        if self._future.done():
            return
        self._cancel_reason = reason
        if self._stream is not None:
            self._stream.cancel(self.task_id, reason)
            return
        # Between attempts no server holds the task, so the cancel is ours to complete.
        if self._waiting is not None:
            self._waiting.cancel()
        self._resolve(
            TaskCancelled(task_id=self.task_id, reason=reason or "cancelled", was_running=False)
        )

    def _abandon(self, reason: str) -> None:
        """The only waiter is gone and took the future with it: cancel the task on the
        server (or stop a retry waiting for its turn) and forget the handle."""
        self._cancel_reason = reason
        if self._stream is not None:
            self._stream.cancel(self.task_id, reason)
        elif self._waiting is not None:
            self._waiting.cancel()
        self._forget()

    def _ended(self, outcome: Outcome, *, sent: bool) -> None:
        """The current attempt is over: resolve the handle, or let the owner retry it.

        `sent` is False when the task never left this client (the stream broke before
        the writer took it, or the replica could not be reached).
        """
        self._stream = None
        if self._future.done():
            return
        if self._cancel_reason is not None:
            if never_ran(outcome, sent=sent):
                outcome = TaskCancelled(
                    task_id=self.task_id,
                    was_running=False,
                    reason=self._cancel_reason or "cancelled",
                )
        elif (
            isinstance(outcome, BaseException)
            and self._owner is not None
            and self._owner.retry(self, outcome, sent=sent)
        ):  # a Result is never retried
            self._events = TaskEvents(self.task_id, self._on_log)
            return
        self._resolve(outcome)

    def _resolve(self, outcome: Outcome) -> None:
        if not self._future.done():
            self._future.set_result(outcome)
        self._forget()

    def _forget(self) -> None:
        # Called directly rather than as a done-callback of the future: a callback is
        # one more thing the event loop schedules and runs per task.
        if self._owner is not None:
            self._owner.forget(self)

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"<TaskHandle {self.task_id} {state}>"


class _SubmitStream:
    """One Submit call with its writer and reader tasks and the handles in flight on it."""

    def __init__(
        self,
        stub: pb_grpc.ExecutorStub,
        metadata: tuple[tuple[str, str], ...],
        max_in_flight: int | None,
    ) -> None:
        self._call = stub.Submit(metadata=metadata)
        # (request, id of the task it carries or None); a None request means half-close.
        self._outbox: deque[tuple[pb.SubmitRequest | None, str | None]] = deque()
        self._wakeup: asyncio.Future[None] | None = None  # set while the writer is idle
        self._handles: dict[str, TaskHandle] = {}
        self._unsent: set[str] = set()  # in the outbox, not yet taken by the writer
        self._slots = asyncio.Semaphore(max_in_flight) if max_in_flight else None
        self.error: ZakoError | None = None  # set once: why the stream is no longer usable
        self.batching = False  # whether the server takes TaskBatch (its Capabilities said)
        self._pace = Pace(asyncio.get_running_loop().time)  # when tasks end, for lingering
        self._writer = asyncio.create_task(self._write_loop(), name="zako-submit-writer")
        self._reader = asyncio.create_task(self._read_loop(), name="zako-submit-reader")
        self._probe = asyncio.create_task(self._ask(stub, metadata), name="zako-submit-probe")

    async def _ask(self, stub: pb_grpc.ExecutorStub, metadata: tuple[tuple[str, str], ...]) -> None:
        """If the server batches, ask for EventBatch replies and coalesce from then on."""
        if await batches(stub, metadata) and self.error is None:
            self._post(OPTIONS, None)
            self.batching = True

    @property
    def closed(self) -> bool:
        return self.error is not None

    @property
    def capped(self) -> bool:
        """Whether `submit()` may wait for a slot; if not, `send()` does the same at once."""
        return self._slots is not None

    async def submit(self, handle: TaskHandle) -> None:
        """Send the handle's task on this stream (after waiting for a slot, if capped).

        Raises the stream's error if it broke meanwhile; the task then never left.
        """
        if self._slots is None:
            self.send(handle)
            return
        await self._slots.acquire()
        try:
            sent = self.send(handle)
        except ZakoError:
            self._release()
            raise
        if not sent:
            self._release()  # cancelled while it waited for the slot

    def send(self, handle: TaskHandle) -> bool:
        """Queue the handle's task for the writer, without waiting; False if the handle is
        already done. Raises the stream's error if it broke. On a capped stream the
        caller must hold a slot (as `submit()` does)."""
        if self.error is not None:
            raise self.error
        if handle.done():
            return False
        task_id = handle.task_id
        self._handles[task_id] = handle
        self._unsent.add(task_id)
        handle._stream = self
        request = handle._request
        if request is None:
            request = handle._request = pb.SubmitRequest(task=handle._task)
        self._post(request, task_id)
        return True

    def _post(self, request: pb.SubmitRequest | None, task_id: str | None) -> None:
        self._outbox.append((request, task_id))
        wakeup = self._wakeup
        if wakeup is not None:
            self._wakeup = None
            if not wakeup.done():
                wakeup.set_result(None)

    def pending(self, task_id: str) -> bool:
        return task_id in self._handles

    def cancel(self, task_id: str, reason: str) -> None:
        if self.error is None and task_id in self._handles:
            self._post(pb.SubmitRequest(cancel=pb.CancelTask(task_id=task_id, reason=reason)), None)

    def _release(self) -> None:
        if self._slots is not None:
            self._slots.release()

    async def _write_loop(self) -> None:
        outbox = self._outbox
        loop = asyncio.get_running_loop()
        lingered = False
        try:
            while True:
                if not outbox:
                    self._wakeup = loop.create_future()
                    await self._wakeup
                    continue
                request, task_id = outbox[0]
                if task_id is not None and self.batching and not lingered:
                    delay = self._pace.linger(len(self._handles))
                    if delay:  # let the next few tasks join this one (see _wire.Pace)
                        lingered = True
                        await asyncio.sleep(delay)
                        continue
                lingered = False
                outbox.popleft()
                if request is None:
                    break
                if task_id is not None:
                    # From here on the server may have the task: it is no longer ours
                    # to resend (a write can fail after the bytes went out).
                    self._unsent.discard(task_id)
                    if self.batching and outbox and outbox[0][1] is not None:
                        request = coalesce(request, outbox, self._unsent)
                await self._call.write(request)
            await self._call.done_writing()
        except (grpc.RpcError, asyncio.InvalidStateError):
            pass  # the call is over; the reader learns the status and reports it
        except Exception as exc:
            error = RPCError(
                f"writing to the Submit stream failed: {exc!r}", code=grpc.StatusCode.INTERNAL
            )
            error.__cause__ = exc
            self._fail(error)
            self._call.cancel()

    async def _read_loop(self) -> None:
        try:
            while True:
                event = await self._call.read()
                if event is grpc.aio.EOF:
                    self._fail(
                        Unavailable(
                            "the server ended the Submit stream", code=grpc.StatusCode.UNAVAILABLE
                        )
                    )
                    return
                if not event.task_id and event.HasField("batch"):  # see _wire
                    for one in event.batch.events:
                        self._dispatch(one)
                else:
                    self._dispatch(event)
        except grpc.RpcError as exc:
            self._fail(map_rpc_error(exc))
        except asyncio.CancelledError:
            # The call was cancelled locally (aclose, channel closed) or this task was.
            self._fail(
                Unavailable("the Submit stream was cancelled", code=grpc.StatusCode.CANCELLED)
            )
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
            self._release()
            self._pace.ended()
            handle._ended(outcome, sent=True)

    def _fail(self, error: ZakoError) -> None:
        if self.error is not None:
            return
        self.error = error
        self._writer.cancel()
        self._probe.cancel()
        handles, self._handles = list(self._handles.values()), {}
        unsent, self._unsent = self._unsent, set()
        for handle in handles:
            self._release()
            handle._ended(error, sent=handle.task_id not in unsent)

    async def finish(self, grace: float = 5.0) -> None:
        """Half-close and let the server end the stream; then make sure it is gone."""
        if self.error is None:
            self._post(None, None)
            await asyncio.wait([self._reader], timeout=grace)
        await self.aclose(ClientClosed("the stream was finished"))

    async def aclose(self, error: ZakoError) -> None:
        """Fail what is still in flight with `error`; the server then cancels those tasks."""
        self._fail(error)
        self._call.cancel()
        await asyncio.wait([self._reader, self._writer, self._probe])
