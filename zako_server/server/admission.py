"""Admission: which accepted task runs next, so the machine is never oversubscribed and
no tenant starves the others.

    enqueue() ── closed? Draining ── can never fit? CannotFit ── queue/tenant full? Overloaded
        │        └─ fair share: a tenant holding as much of the queue as is left free? Overloaded
        │
        ▼  waiting[priority][tenant] = deque of tickets (arrival order)
    _grant(): best priority first; within it the tenant running the fewest tasks first
        (fair share); a ticket runs when its whole request fits the free capacity and its
        tenant's quota. Smaller tickets may pass one that does not fit (backfill) until
        that one has waited `aging` seconds; then nothing passes it until it runs.
        │
        ▼  lease: resources held until release() (exactly once, on every path)
    expire(now): waiting tickets past their deadline leave with QueueDeadlineExceeded.

The shape is trio's CapacityLimiter: `enqueue` never waits, `acquire` waits in line, a
cancelled waiter removes itself, and `statistics()` hands out a frozen snapshot. Worker
slots are one more resource ("workers", one per task), so a granted lease always finds a
worker; beyond them, the places the pool says a busy worker can queue right now
(`spare_slots`, prefetch in pool.py), so no task waits outside this queue's order and
deadlines for long. Pure asyncio, no gRPC; the clock is injected so the policy is unit-tested with
virtual time (`timers=False` and explicit `expire(now)` calls).

This module is the line: the order tickets are looked at in, the grants, backfill, aging
and deadlines. What each ticket counts for, and the refusals (capacity, quotas, the fair
share of the queue), are kept in the ledger (quotas.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping

from zako_server.server.errors import QueueDeadlineExceeded
from zako_server.server.quotas import WORKERS, AdmissionPolicy, AdmissionStats, Ledger, Ticket
from zako_server.server.stats import Histogram

# How many waiting tickets one scheduling pass looks at for backfill: bounds the cost of
# a pass when thousands wait, while still letting small tasks pass a blocked large one.
_BACKFILL_WINDOW = 256


class Admission:
    """Orders waiting tasks and grants them resources without ever exceeding capacity."""

    def __init__(
        self,
        policy: AdmissionPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        timers: bool = True,
        spare_slots: Callable[[], int] | None = None,
    ) -> None:
        if policy.queue_capacity < 1 or policy.capacities.get(WORKERS, 0) < 1:
            raise ValueError("queue_capacity and the workers capacity must be >= 1")
        self.policy = policy
        self._clock = clock
        self._timers = timers
        # Worker places beyond the workers capacity that the pool can fill right now: a
        # busy worker's queue (prefetch, pool.py). Read at each scheduling pass.
        self._spare_slots = spare_slots
        self._waiting: dict[int, dict[str, deque[Ticket]]] = defaultdict(dict)
        # The counts and the quota checks (quotas.py).
        self._ledger = Ledger(policy)
        self._deadlines: list[tuple[float, int, Ticket]] = []
        self._deadline_task: asyncio.Task[None] | None = None
        self._deadline_changed = asyncio.Event()
        # The deadline the timer sleeps until (inf: none): a later one needs no wake-up,
        # and waking it for every task (a new wait_for each time) showed in profiles.
        self._timer_at = math.inf
        # The loop our futures belong to, kept: asking for it on every enqueue showed too.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seq = itertools.count()
        self.queue_wait = Histogram()

    # -- the public operations ----------------------------------------------------------

    def enqueue(
        self,
        task_id: str,
        *,
        tenant: str = "anonymous",
        priority: int = 0,
        request: Mapping[str, float] | None = None,
        size_bytes: int = 0,
        deadline: float | None = None,
        readmit: bool = False,
    ) -> tuple[Ticket, int]:
        """Take a place in line at once or refuse; returns the ticket and its position.

        `readmit`: a task accepted earlier takes its place again (after its stream's
        backpressure): the fair share judged it when it was accepted, and refusing it
        now would fail a task the tenant was told is in line."""
        request = {WORKERS: 1.0, **(request or {})}
        ledger = self._ledger
        ledger.check_admissible(tenant, request, size_bytes, readmit)
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        ticket = Ticket(
            task_id,
            tenant,
            priority,
            request,
            size_bytes,
            deadline,
            next(self._seq),
            self._clock(),
            loop.create_future(),
        )
        position = ledger.position(priority)
        self._waiting[priority].setdefault(tenant, deque()).append(ticket)
        ledger.join(ticket, readmit)
        if deadline is not None:
            heapq.heappush(self._deadlines, (deadline, ticket.seq, ticket))
            self._wake_deadline_timer(deadline)
        self._grant()
        return ticket, position

    async def acquire(self, ticket: Ticket) -> None:
        """Wait until granted. Cancelled: the ticket leaves the line (or hands its lease
        back if it was granted in the same instant). Raises QueueDeadlineExceeded.

        The waiter's cancellation cancels `ticket.granted` itself (no shield: that cost a
        loop pass per task between a lease coming free and the next task starting), so
        the grant and expiry paths skip a future that is already settled; the state says
        what happened and the handler below squares it."""
        granted = ticket.granted
        try:
            if not granted.done():  # granted on enqueue: no suspension at all
                await granted
            granted.result()
        except asyncio.CancelledError:
            if ticket.state == "granted":
                self.release(ticket)
            else:
                self.withdraw(ticket)
            raise

    def withdraw(self, ticket: Ticket) -> bool:
        """Remove a waiting ticket (a queued task was cancelled). False if not waiting."""
        if ticket.state != "waiting":
            return False
        self._remove_waiting(ticket, "withdrawn")
        if not ticket.granted.done():
            ticket.granted.cancel()
        self._grant()  # a blocked head may have been holding back backfill
        return True

    def release(self, ticket: Ticket) -> None:
        """Give a granted lease back. Idempotent, so every exit path may call it."""
        if ticket.state != "granted":
            return
        ticket.state = "released"
        self._ledger.give_back(ticket)
        self._grant()

    def expire(self, now: float | None = None) -> list[Ticket]:
        """Fail every waiting ticket whose deadline has passed; returns them."""
        now = self._clock() if now is None else now
        expired = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, ticket = heapq.heappop(self._deadlines)
            if ticket.state != "waiting":
                continue
            self._remove_waiting(ticket, "expired")
            waited = now - ticket.enqueued_at
            if not ticket.granted.done():  # done: its waiter was cancelled meanwhile
                ticket.granted.set_exception(
                    QueueDeadlineExceeded(
                        f"the task waited {waited:.3f}s in the queue and its deadline passed "
                        "before a worker was free; it did not run"
                    )
                )
                ticket.granted.exception()  # retrieved by acquire(); no "never retrieved"
            expired.append(ticket)
        if expired:
            self._grant()
        return expired

    def close(self) -> None:
        """Refuse new tasks from now on (draining); queued ones keep their place."""
        self._ledger.closed = True

    async def aclose(self) -> None:
        self.close()
        if self._deadline_task is not None:
            self._deadline_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._deadline_task

    def note_rejection(self, tenant: str) -> None:
        """Count a refused task for its tenant (the caller counts every refusal once,
        whether validation or `enqueue` refused it)."""
        self._ledger.rejected[tenant] += 1

    def statistics(self) -> AdmissionStats:
        return self._ledger.statistics(self.queue_wait)

    # -- the line -----------------------------------------------------------------------

    def _candidates(self) -> Iterator[Ticket]:
        """Waiting tickets in policy order: priority, then the least-served tenant
        (fewest running), then arrival; at most the backfill window.

        Lazy: the head usually fits, and building the whole window on every grant was
        the costliest step of a task's admission with a few dozen waiting. The caller
        stops iterating as soon as it changes the queues."""
        seen = 0
        running = self._ledger.running
        for priority in sorted(self._waiting):
            tenants = self._waiting[priority]
            queues = sorted(
                (q for q in tenants.values() if q),
                key=lambda q: (running[q[0].tenant], q[0].seq),
            )
            # Round-robin across tenants so one tenant's backlog cannot fill the window.
            for depth in range(max((len(q) for q in queues), default=0)):
                for q in queues:
                    if depth < len(q):
                        yield q[depth]
                        seen += 1
                        if seen >= _BACKFILL_WINDOW:
                            return

    def regrant(self) -> None:
        """The pool has a new place to fill (a worker became busy and can queue a task
        behind its own): grant it now, not at the next enqueue or release."""
        self._grant()

    def _grant(self) -> None:
        ledger = self._ledger
        if not ledger.queued:
            return
        now = self._clock()
        workers = self.policy.capacities[WORKERS]
        while ledger.queued and ledger.in_use[WORKERS] < workers:
            granted = False
            for ticket in self._candidates():
                if ledger.fits(ticket):
                    self._start(ticket, now)
                    granted = True
                    break  # fair-share order changed; recompute
                held_by_quota = ledger.running[ticket.tenant] >= self.policy.tenant_max_running
                if not held_by_quota and now - ticket.enqueued_at >= self.policy.aging:
                    return  # aged: reserve capacity for it, let nothing pass
            if not granted:
                return
        if ledger.queued and self._spare_slots is not None:
            self._grant_spare(now)

    def _grant_spare(self, now: float) -> None:
        """Places busy workers can queue a task in (prefetch) go to the head of the line
        only, if it fits: no backfill, which would scan the whole window on every pass
        when another resource (cpu, by default at max_workers = CPUs) is what binds."""
        spare = float(self._spare_slots()) if self._spare_slots is not None else 0.0
        workers = self.policy.capacities[WORKERS] + spare
        ledger = self._ledger
        while spare > 0 and ledger.queued and ledger.in_use[WORKERS] < workers:
            head = next(self._candidates(), None)
            if head is None or not ledger.fits(head, spare):
                return
            self._start(head, now)

    def _start(self, ticket: Ticket, now: float) -> None:
        self._remove_waiting(ticket, "granted")
        self._ledger.hold(ticket)
        self.queue_wait.observe(max(now - ticket.enqueued_at, 0.0))
        if not ticket.granted.done():  # done: its waiter was cancelled and will release
            ticket.granted.set_result(None)

    def _remove_waiting(self, ticket: Ticket, state: str) -> None:
        tenants = self._waiting[ticket.priority]
        queue = tenants[ticket.tenant]
        queue.remove(ticket)
        if not queue:
            del tenants[ticket.tenant]
        if not tenants:
            del self._waiting[ticket.priority]
        ticket.state = state
        self._ledger.leave(ticket)

    # -- deadline timer -----------------------------------------------------------------

    def _wake_deadline_timer(self, deadline: float) -> None:
        if not self._timers:
            return
        if self._deadline_task is None or self._deadline_task.done():
            self._deadline_task = asyncio.get_running_loop().create_task(
                self._deadline_loop(), name="zako-admission-deadlines"
            )
        elif deadline >= self._timer_at:
            return  # the timer wakes before this one is due, and then sees it
        self._deadline_changed.set()

    async def _deadline_loop(self) -> None:
        while True:
            self._deadline_changed.clear()
            self.expire()
            while self._deadlines and self._deadlines[0][2].state != "waiting":
                heapq.heappop(self._deadlines)
            self._timer_at = self._deadlines[0][0] if self._deadlines else math.inf
            delay = self._timer_at - self._clock()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(
                    self._deadline_changed.wait(), None if delay == math.inf else max(delay, 0.0)
                )
