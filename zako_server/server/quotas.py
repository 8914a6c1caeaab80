"""Admission's books: what each ticket asks for and holds, counted per tenant, priority
and resource, and the refusals and fits judged against them (capacities, quotas, fair share).

    enqueue ─▶ check_admissible: Draining, CannotFit, Overloaded (queue, quota, fair share)
              join ─▶ waiting, per tenant and priority; demand per resource
    grant ────▶ fits? (capacity, the tenant's running quota) ─▶ leave, hold ─▶ in use
    release ──▶ give_back

Fair share of the queue (#12): the queue is shared, so without a bound one tenant's
burst fills it and every other tenant is refused until it drains. A tenant may add a
task only while the tasks (and bytes) it already has waiting are fewer than the places
(and bytes) left free: the dynamic threshold of shared switch buffers (Choudhury and
Hahne). Alone, a tenant can hold at most half the queue; each newcomer finds room, and
with n tenants flooding each settles at 1/(n+1) of it. No ticket is ever evicted: an
accepted task keeps its place, the greedy tenant is only refused further tasks.

Its own concern, apart from the line (admission.py): the line decides which ticket is
looked at next and when (priority, fair order, backfill, aging, deadlines); the ledger
only counts what waits and what is held, and says whether a ticket may join the line or
fits the capacity left. Tickets, the policy and the Stats snapshot are its vocabulary.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from zako_server.server.errors import CannotFit, Draining, Overloaded
from zako_server.server.stats import Histogram

WORKERS = "workers"


@dataclass(frozen=True)
class AdmissionPolicy:
    """Capacities and limits; built from Settings once."""

    capacities: Mapping[str, float]
    queue_capacity: int
    queue_capacity_bytes: int = 1 << 62
    tenant_max_queued: int = 1 << 62
    tenant_max_running: int = 1 << 62
    aging: float = 30.0
    retry_after: float = 1.0


@dataclass(eq=False)
class Ticket:
    """One task's place in line; it becomes a lease once granted."""

    task_id: str
    tenant: str
    priority: int
    request: Mapping[str, float]
    size_bytes: int
    deadline: float | None
    seq: int
    enqueued_at: float
    granted: asyncio.Future[None] = field(repr=False)
    state: str = "waiting"  # waiting -> granted -> released | withdrawn | expired


@dataclass(frozen=True)
class ResourceUse:
    capacity: float
    in_use: float
    queued_demand: float


@dataclass(frozen=True)
class TenantUse:
    running: int
    queued: int
    accepted: int
    rejected: int


@dataclass(frozen=True)
class AdmissionStats:
    """A consistent snapshot for Stats."""

    running: int
    queued: int
    capacity: int
    queued_bytes: int
    capacity_bytes: int
    closed: bool
    depth_by_priority: Mapping[int, int]
    resources: Mapping[str, ResourceUse]
    tenants: Mapping[str, TenantUse]
    queue_wait: Histogram


class Ledger:
    """What waits and what is held, by tenant, priority and resource; built from the
    policy once, changed only by the line (admission.py) as tickets move."""

    def __init__(self, policy: AdmissionPolicy) -> None:
        self.policy = policy
        self.queued = 0
        self.queued_bytes = 0
        self.depth: Counter[int] = Counter()
        self.in_use: dict[str, float] = dict.fromkeys(policy.capacities, 0.0)
        self.demand: dict[str, float] = dict.fromkeys(policy.capacities, 0.0)
        self.running: Counter[str] = Counter()
        self.tenant_queued: Counter[str] = Counter()
        self.tenant_bytes: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.closed = False  # draining (Admission.close): every new task is refused

    def check_admissible(
        self, tenant: str, request: Mapping[str, float], size_bytes: int, readmit: bool = False
    ) -> None:
        policy = self.policy
        if self.closed:
            raise Draining(
                "server is shutting down; retry on another replica", retry_after=policy.retry_after
            )
        for name, amount in request.items():
            capacity = policy.capacities.get(name, 0.0)
            if amount > capacity:
                field = "task.resources." + {"cpu": "cpu_millis", "memory": "memory_bytes"}.get(
                    name, f"extras[{name!r}]"
                )
                raise CannotFit(
                    f"{field} asks for {amount:g} of {name!r}; this server's "
                    f"capacity is {capacity:g}",
                    field=field,
                )
        if self.tenant_queued[tenant] >= policy.tenant_max_queued:
            raise Overloaded(
                f"tenant {tenant!r} already has {policy.tenant_max_queued} tasks queued, its quota",
                retry_after=policy.retry_after,
                quota=f"tenant/{tenant}/max_queued",
            )
        if not readmit:
            self.check_fair_share(tenant, size_bytes)
        if self.queued >= policy.queue_capacity:
            raise Overloaded(
                f"queue is full ({policy.queue_capacity} tasks waiting); retry later",
                retry_after=policy.retry_after,
            )
        if self.queued_bytes + size_bytes > policy.queue_capacity_bytes:
            raise Overloaded(
                f"queue is full ({self.queued_bytes} bytes of tasks waiting, "
                f"limit {policy.queue_capacity_bytes}); retry later",
                retry_after=policy.retry_after,
            )

    def check_fair_share(self, tenant: str, size_bytes: int) -> None:
        """Refuse a tenant that already holds as much of the queue as is left free.

        A tenant with nothing waiting always passes (only a full queue refuses it), so a
        newcomer is never shut out by another tenant's burst; one that holds half of an
        otherwise empty queue is refused, keeping the other half for the rest."""
        policy = self.policy
        held = self.tenant_queued[tenant]
        free = policy.queue_capacity - self.queued
        if held and held >= free:
            raise Overloaded(
                f"tenant {tenant!r} has {held} tasks waiting and the queue only {free} free "
                f"places of {policy.queue_capacity}; a tenant may hold no more of the shared "
                "queue than is left free (fair share); retry later",
                retry_after=policy.retry_after,
                quota=f"tenant/{tenant}/queue_share",
            )
        held_bytes = self.tenant_bytes[tenant]
        free_bytes = policy.queue_capacity_bytes - self.queued_bytes
        if held_bytes and held_bytes + size_bytes > free_bytes:
            raise Overloaded(
                f"tenant {tenant!r} has {held_bytes} bytes of tasks waiting and this one "
                f"({size_bytes} bytes) would take it past the {free_bytes} bytes left free "
                f"of {policy.queue_capacity_bytes}; a tenant may hold no more of the shared "
                "queue than is left free (fair share); retry later",
                retry_after=policy.retry_after,
                quota=f"tenant/{tenant}/queue_share_bytes",
            )

    def fits(self, ticket: Ticket, spare: float = 0.0) -> bool:
        """Whether the ticket's request fits now; `spare`: worker places beyond the
        workers capacity (see `Admission._grant_spare`)."""
        if self.running[ticket.tenant] >= self.policy.tenant_max_running:
            return False
        capacities = self.policy.capacities
        return all(
            self.in_use[name] + amount
            <= capacities[name] + (spare if name == WORKERS else 0.0) + 1e-9
            for name, amount in ticket.request.items()
        )

    def position(self, priority: int) -> int:
        """A new ticket's place in line: those waiting at its priority or better."""
        return sum(n for p, n in self.depth.items() if p <= priority)

    def join(self, ticket: Ticket, readmit: bool) -> None:
        """Count a ticket that took its place in line."""
        tenant, size_bytes = ticket.tenant, ticket.size_bytes
        self.queued += 1
        self.queued_bytes += size_bytes
        self.depth[ticket.priority] += 1
        self.tenant_queued[tenant] += 1
        self.tenant_bytes[tenant] += size_bytes
        if not readmit:  # a readmitted task was counted when it was first accepted
            self.accepted[tenant] += 1
        for name, amount in ticket.request.items():
            self.demand[name] += amount

    def leave(self, ticket: Ticket) -> None:
        """Count a ticket that left the line (granted, withdrawn or expired)."""
        self.queued -= 1
        self.queued_bytes -= ticket.size_bytes
        self.depth[ticket.priority] -= 1
        self.tenant_queued[ticket.tenant] -= 1
        self.tenant_bytes[ticket.tenant] -= ticket.size_bytes
        for name, amount in ticket.request.items():
            self.demand[name] -= amount

    def hold(self, ticket: Ticket) -> None:
        """Count a granted ticket's lease."""
        self.running[ticket.tenant] += 1
        for name, amount in ticket.request.items():
            self.in_use[name] += amount

    def give_back(self, ticket: Ticket) -> None:
        """Count a lease given back."""
        self.running[ticket.tenant] -= 1
        for name, amount in ticket.request.items():
            self.in_use[name] -= amount

    def statistics(self, queue_wait: Histogram) -> AdmissionStats:
        """A consistent snapshot of the counts, with `queue_wait` (the line's)."""
        tenants = set(self.accepted) | set(self.rejected)
        return AdmissionStats(
            running=sum(self.running.values()),
            queued=self.queued,
            capacity=self.policy.queue_capacity,
            queued_bytes=self.queued_bytes,
            capacity_bytes=self.policy.queue_capacity_bytes,
            closed=self.closed,
            depth_by_priority={p: n for p, n in self.depth.items() if n},
            resources={
                name: ResourceUse(cap, self.in_use[name], self.demand[name])
                for name, cap in self.policy.capacities.items()
            },
            tenants={
                t: TenantUse(
                    self.running[t], self.tenant_queued[t], self.accepted[t], self.rejected[t]
                )
                for t in sorted(tenants)
            },
            queue_wait=queue_wait.copy(),
        )
