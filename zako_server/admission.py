"""Admission: which accepted task runs next, and how many run at once.

    service ──enqueue()──▶ [ waiting, sorted by (priority, arrival) ] ──grant──▶ lease
                 │ full → Overloaded (RESOURCE_EXHAUSTED + retry hint)     │
                 │ closed → Draining (UNAVAILABLE)                          ▼
                                                     pool runs the task; release(lease)

The shape is trio's CapacityLimiter: `enqueue` never waits (it decides at once whether
a task may queue), `acquire` waits in line, a cancelled waiter removes itself, and all
state lives here behind a frozen `statistics()` snapshot. Slots equal the pool's
maximum workers, so a granted lease always finds a worker, warm or about to start.

Pure asyncio, no gRPC: the clock is injectable and the rules are unit-tested directly.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from zako_server.errors import Draining, Overloaded


@dataclass(eq=False)
class Ticket:
    """One task's place in line; it becomes a lease once granted."""

    task_id: str
    priority: int
    seq: int
    enqueued_at: float
    granted: asyncio.Future[None] = field(repr=False)
    released: bool = False

    @property
    def key(self) -> tuple[int, int]:
        return (self.priority, self.seq)


@dataclass(frozen=True)
class AdmissionStats:
    """A consistent snapshot for Stats."""

    slots: int
    running: int
    queued: int
    capacity: int
    closed: bool


class Admission:
    """Orders waiting tasks by priority then arrival and grants at most `slots` at once."""

    def __init__(
        self,
        slots: int,
        queue_capacity: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        retry_after: float = 1.0,
    ) -> None:
        if slots < 1 or queue_capacity < 1:
            raise ValueError("slots and queue_capacity must be >= 1")
        self._slots = slots
        self._capacity = queue_capacity
        self._clock = clock
        self._retry_after = retry_after
        self._order: list[tuple[int, int]] = []
        self._waiting: dict[tuple[int, int], Ticket] = {}
        self._running = 0
        self._seq = itertools.count()
        self._closed = False

    def enqueue(self, task_id: str, priority: int = 0) -> tuple[Ticket, int]:
        """Take a place in line at once or refuse; returns the ticket and its position."""
        if self._closed:
            raise Draining("server is shutting down; retry on another replica",
                           retry_after=self._retry_after)
        if len(self._order) >= self._capacity:
            raise Overloaded(
                f"queue is full ({self._capacity} tasks waiting); retry later",
                retry_after=self._retry_after,
            )
        loop = asyncio.get_running_loop()
        ticket = Ticket(task_id, priority, next(self._seq), self._clock(), loop.create_future())
        position = bisect.bisect_left(self._order, ticket.key)
        self._order.insert(position, ticket.key)
        self._waiting[ticket.key] = ticket
        self._grant()
        return ticket, position

    async def acquire(self, ticket: Ticket) -> None:
        """Wait until the ticket is granted; if cancelled, the ticket leaves the line."""
        try:
            await asyncio.shield(ticket.granted)
        except asyncio.CancelledError:
            if ticket.granted.done() and not ticket.granted.cancelled():
                # Granted in the same instant we were cancelled: hand the slot back.
                self.release(ticket)
            else:
                self.withdraw(ticket)
            raise

    def withdraw(self, ticket: Ticket) -> bool:
        """Remove a waiting ticket (a queued task was cancelled). False if not waiting."""
        if self._waiting.pop(ticket.key, None) is None:
            return False
        index = bisect.bisect_left(self._order, ticket.key)
        del self._order[index]
        if not ticket.granted.done():
            ticket.granted.cancel()
        return True

    def release(self, ticket: Ticket) -> None:
        """Give a granted slot back. Idempotent, so every exit path may call it."""
        if ticket.released or not ticket.granted.done() or ticket.granted.cancelled():
            return
        ticket.released = True
        self._running -= 1
        self._grant()

    def close(self) -> None:
        """Refuse new tasks from now on (draining); queued ones keep their place."""
        self._closed = True

    def position(self, ticket: Ticket) -> int | None:
        """How many tasks are ahead of a waiting ticket; None once it left the line."""
        if ticket.key not in self._waiting:
            return None
        return bisect.bisect_left(self._order, ticket.key)

    def statistics(self) -> AdmissionStats:
        return AdmissionStats(self._slots, self._running, len(self._order), self._capacity,
                              self._closed)

    def _grant(self) -> None:
        while self._running < self._slots and self._order:
            key = self._order.pop(0)
            ticket = self._waiting.pop(key)
            self._running += 1
            ticket.granted.set_result(None)
