"""A Submit stream's outbox: the events waiting for its client, bounded in bytes.

It is the stream's backpressure (an engine.Gate): above `limit` bytes it closes, and
the stream's tasks that have not started wait without a lease while its requests are
not read; once the client has read it down to half it opens again. So a stream holds
at most the bound plus what its running tasks still print and return (each bounded),
whatever its client does or fails to read.

On a stream whose client asked for batches (StreamOptions.batch_events), the events
that are ready together leave as one message (`take_ready`, then `batch`): one gRPC
write per wake-up of the writer instead of one per event, which is where the server
spends most of a trivial task's time (#16). The bytes stay counted per event, so the
backpressure above is unchanged. On such a stream with many tasks in flight, an event
may wait a little for others to join it (`Pace`), as the SDK's writer does for tasks.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from zako_sdk.proto.zako.v1 import executor_pb2 as pb

log = logging.getLogger("zako.service")

# The events that end a task.
TERMINAL = frozenset({"completed", "failed", "cancelled", "rejected"})
# What an event costs inside an EventBatch beyond its own bytes: the field's tag and a
# length of up to 5 bytes; and the envelope around the batch, the same again.
FRAMING = 6


class Outbox:
    """Events waiting to be written to one Submit stream. One consumer, so a deque and a
    single waiter do what asyncio.Queue does, in a third of the calls per event.

    It counts the bytes it holds and is the stream's backpressure gate (engine.Gate):
    closed above `limit` bytes, open again once the client has read it down to half."""

    __slots__ = ("_bytes", "_items", "_loop", "_open", "_waiter", "limit")

    def __init__(self, limit: int) -> None:
        self._items: deque[tuple[pb.SubmitResponse | None, int]] = deque()
        # Kept: get_running_loop() costs a getpid() system call on every call.
        self._loop = asyncio.get_running_loop()
        self._waiter: asyncio.Future[None] | None = None
        self._bytes = 0
        self.limit = limit
        self._open = asyncio.Event()
        self._open.set()

    @property
    def held_bytes(self) -> int:
        return self._bytes

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    async def wait_open(self) -> None:
        await self._open.wait()

    def put_nowait(self, item: pb.SubmitResponse | None) -> None:
        size = 0 if item is None else item.ByteSize()
        self._items.append((item, size))
        self._bytes += size
        if self._bytes > self.limit and self._open.is_set():
            self._open.clear()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> tuple[pb.SubmitResponse | None, int]:
        while not self._items:
            self._waiter = self._loop.create_future()
            await self._waiter
        item, size = self._items.popleft()
        self._bytes -= size
        if not self._open.is_set() and self._bytes <= self.limit // 2:
            self._open.set()
        return item, size

    def take_ready(self, room: int) -> list[pb.SubmitResponse]:
        """The events already waiting, in order, as many as fit in `room` bytes framed
        (without waiting, and never past an end marker): the rest of one batch."""
        items, taken, freed = self._items, [], 0
        while items:
            event, size = items[0]
            if event is None or size + FRAMING > room:
                break
            items.popleft()
            taken.append(event)
            room -= size + FRAMING
            freed += size
        if freed:
            self._bytes -= freed
            if not self._open.is_set() and self._bytes <= self.limit // 2:
                self._open.set()
        return taken


def batch(events: list[pb.SubmitResponse]) -> pb.SubmitResponse:
    """Several events as the one SubmitResponse that carries them (envelope left empty)."""
    return pb.SubmitResponse(batch=pb.EventBatch(events=events))


def oversized(event: pb.SubmitResponse, size: int, limit: int) -> pb.SubmitResponse | None:
    """What goes out instead of an event larger than a message (sending it would end the
    stream): a terminal event becomes an INTERNAL failure of its task, progress is
    dropped. The engine's bounds make this unreachable with consistent settings."""
    kind = event.WhichOneof("event")
    log.error("task %s: a %s event of %d bytes exceeds %d", event.task_id, kind, size, limit)
    if kind not in TERMINAL:
        return None
    error = pb.JsError(
        name="InternalError",
        message=f"the task's {kind} event ({size} bytes) does not fit a message of {limit} bytes",
    )
    return pb.SubmitResponse(
        task_id=event.task_id,
        time=event.time,
        failed=pb.Failed(reason=pb.FAILURE_REASON_INTERNAL, error=error),
    )
