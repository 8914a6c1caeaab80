"""Which idle worker gets a task: the one most likely to hold a warm isolate for it.

    RunFrame.reuse_key ──▶ (tenant, kind, hermetic) or None (fresh isolate)
                                   │
    idle workers, longest idle first ──choose()──▶ 1. same key as its last reuse task
                                                  2. one with no warm isolate yet
                                                  3. the longest idle

A worker keeps warm isolates keyed by the frame's `reuse` tenant, context kind and
hermetic flag (it reads the same property of the same frame); a task sent elsewhere pays
for a fresh isolate (a few milliseconds against tens of microseconds warm). Keeping
unkeyed workers for new keys (step 2) stops one tenant's tasks from evicting another's
warm isolate when a cold worker would do.
Only the choice among idle workers changes: which task runs next is still admission's
call, and waiting tasks still take released workers in arrival order. Pure logic, so it
is unit-tested without processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from zako_server.protocol import ReuseKey
from zako_server.server.worker_handle import WorkerState


class Candidate(Protocol):
    """What `choose` reads of a worker (WorkerHandle has both)."""

    @property
    def state(self) -> WorkerState: ...

    @property
    def warm_key(self) -> ReuseKey | None: ...


def choose(idle: Sequence[Candidate], key: ReuseKey | None) -> int:
    """Index in `idle` (longest idle first) of the worker to hand out; -1 if none is idle.

    Entries whose state is no longer "idle" are skipped (the pool drops them lazily).
    """
    first = cold = -1
    for index, worker in enumerate(idle):
        if worker.state != "idle":
            continue
        if key is not None and worker.warm_key == key:
            return index
        if first < 0:
            first = index
        if cold < 0 and worker.warm_key is None:
            cold = index
            if key is None:
                return index
    return cold if cold >= 0 else first
