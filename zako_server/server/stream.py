"""One Submit stream: its reader, its in-band cancels, its outbox and its guard.

    Submit stream ──reader task──▶ accept (validate ─▶ engine.submit) ─▶ events ─▶ outbox ─▶ client
                   in-band cancel ─▶ engine.cancel(owner = this stream)
    stream closes early ─▶ every unfinished task of the stream is cancelled

The outbox is bounded in bytes (stream_outbox_bytes): past the bound the stream's
tasks that have not started wait (without a lease), then its requests are not read,
until the client has read half of it; gRPC's flow control then holds the client back.
Running tasks still finish into it, so a stream holds at most the bound plus what its
running tasks print and return (each bounded), whatever its client does.

A client that asked for it (StreamOptions.batch_events) gets the events that are ready
together in one message; several tasks may come in one request (TaskBatch), each handled
as if it came alone; a task with terminal_only gets no accepted or started event (#16).

Nothing here maps an error to a status: the servicer (service.py) hands in how a task is
accepted and how a rejection becomes its Rejected event, so that mapping stays in one
module and this one is only about the stream's flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from zako_sdk.pacing import Pace
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_server.server.decoding import Refused
from zako_server.server.engine import Engine
from zako_server.server.errors import InternalFault, Overloaded, TaskNotFound, TaskRejection
from zako_server.server.outbox import FRAMING, TERMINAL, Outbox, batch, oversized
from zako_server.server.records import Emit, Gate
from zako_server.server.settings import Settings

log = logging.getLogger("zako.service")

# Validate and submit one task for this stream: its id, or the Rejected event to send.
Accept = Callable[[pb.Task, object, Emit, Gate], "pb.SubmitResponse | str"]
# A task's rejection as the Rejected event a stream sends instead of an RPC status.
Reject = Callable[[str, TaskRejection], pb.SubmitResponse]


class SubmitStream:
    """The state of one Submit call: the tasks it owns and still awaits, and its outbox.

    The stream ends once its client stopped sending and every task it accepted has had
    its terminal event; if it ends earlier, its unfinished tasks are cancelled."""

    def __init__(
        self, settings: Settings, engine: Engine, tenant: str, accept: Accept, reject: Reject
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.tenant = tenant
        self._accept = accept
        self._reject = reject
        self.owner = object()
        self.out = Outbox(settings.stream_outbox_bytes)
        self.outstanding: set[str] = set()
        self.reading = True
        # Whether the client asked for EventBatch messages (StreamOptions.batch_events).
        self.batch_events = False
        self.pace = Pace(asyncio.get_running_loop().time)  # when tasks end, for lingering

    def emit(self, event: pb.SubmitResponse) -> None:
        """Where the engine puts this stream's tasks' events."""
        self.out.put_nowait(event)
        if event.WhichOneof("event") in TERMINAL:
            self.outstanding.discard(event.task_id)
            self.pace.ended()
            if not self.reading and not self.outstanding:
                self.out.put_nowait(None)

    def handle(self, request: pb.SubmitRequest | Refused) -> None:
        """One request frame: a refused frame, one task or several, an in-band cancel or
        the stream's options."""
        if isinstance(request, Refused):  # undecodable (no id) or too large
            for task_id in request.task_ids or (request.task_id,):
                self.engine.count_rejection(request.error, self.tenant)
                self.out.put_nowait(self._reject(task_id, request.error))
            return
        kind = request.WhichOneof("kind")
        if kind == "task":
            self.submit(request.task)
        elif kind == "tasks":  # as if each came alone, in order
            for task in request.tasks.tasks:
                self.submit(task)
        elif kind == "cancel":
            # Cancel is idempotent: a task that already ended (or never was)
            # is left alone, since it has had its one terminal event.
            with contextlib.suppress(TaskNotFound):
                self.engine.cancel(
                    request.cancel.task_id,
                    request.cancel.reason or "cancelled by client",
                    self.owner,
                    self.tenant,
                )
        elif kind == "options":
            self.batch_events = request.options.batch_events

    def submit(self, task: pb.Task) -> None:
        """One task, alone or from a batch, under the last-resort guard: whatever goes
        wrong with it is its own INTERNAL rejection, never its neighbours' or the
        stream's end. A rejection goes straight out, never through `emit`: it must not
        end the tracking of a live task that has the same id."""
        out = self.out
        try:
            if len(self.outstanding) >= self.settings.max_tasks_per_stream:
                exc = Overloaded(
                    f"this stream already has {len(self.outstanding)} tasks in flight; "
                    f"the limit is {self.settings.max_tasks_per_stream}",
                    retry_after=1.0,
                )
                self.engine.count_rejection(exc, self.tenant)
                out.put_nowait(self._reject(task.id, exc))
                return
            # Task.terminal_only: the engine builds no accepted or started event for it.
            accepted = self._accept(task, self.owner, self.emit, out)
            if isinstance(accepted, str):
                self.outstanding.add(accepted)
            else:
                out.put_nowait(accepted)
        except Exception as exc:
            log.exception("internal error handling a Submit request")
            fault = InternalFault(f"internal server error handling the task: {type(exc).__name__}")
            out.put_nowait(self._reject(task.id, fault))

    async def read(self, request_iterator: AsyncIterator[pb.SubmitRequest | Refused]) -> None:
        """The reader task: every request handled under the last-resort guard, and no
        further reading while the outbox is full (backpressure)."""
        out = self.out
        try:
            async for request in request_iterator:
                try:
                    self.handle(request)
                except Exception:  # a task's fault is its own (`submit`); this is the rest
                    log.exception("internal error handling a Submit request")
                if not out.is_open:  # backpressure: read on once the client has
                    await out.wait_open()
        finally:
            self.reading = False
            if not self.outstanding:
                out.put_nowait(None)

    async def events(
        self, request_iterator: AsyncIterator[pb.SubmitRequest | Refused]
    ) -> AsyncGenerator[pb.SubmitResponse, None]:
        """The stream's responses, in outbox order, until it is done; then (or on any
        early end) the reader stops and the stream's unfinished tasks are cancelled."""
        out = self.out
        reader = asyncio.create_task(self.read(request_iterator), name="zako-submit-reader")
        try:
            limit = self.settings.max_message_bytes
            room = limit - FRAMING  # for the events of one batch, framed
            while True:
                event, size = await out.get()
                if event is None:
                    if not self.reading and not self.outstanding:
                        break
                    continue
                if size > limit:  # the engine bounds every event; this is the backstop
                    event = oversized(event, size, limit)
                    if event is None:
                        continue
                elif self.batch_events:
                    delay = self.pace.linger(len(self.outstanding))
                    if delay:  # a busy stream: let the next few events join this one
                        await asyncio.sleep(delay)
                    more = out.take_ready(room - size - FRAMING)
                    if more:
                        more.insert(0, event)
                        event = batch(more)
                yield event
            await reader
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            self.engine.cancel_owned_by(self.owner, "stream closed")
