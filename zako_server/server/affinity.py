"""Which idle worker gets a task: the one most likely to hold a warm isolate for it.

    RunFrame.reuse_key ──▶ (tenant, kind, hermetic) or None (fresh isolate)
                                   │
    idle workers, longest idle first ──choose()──▶ 1. same key as its last reuse task
                                                  2. the one holding the most bytes
                                                     of the task's module texts and tree
                                                     pack (64 KiB+)
                                                  3. one with no warm isolate yet
                                                  4. the longest idle

A worker keeps warm isolates keyed by the frame's `reuse` tenant, context kind and
hermetic flag (it reads the same property of the same frame); a task sent elsewhere pays
for a fresh isolate (a few milliseconds against tens of microseconds warm). Keeping
unkeyed workers for new keys (step 2) stops one tenant's tasks from evicting another's
warm isolate when a cold worker would do. Step 2 (the frame's `digests`, mirrored per
worker by code_mirror.py) saves sending the texts again: a 9 MB library costs tens of
milliseconds on a pipe, far more than the warm isolate another tenant might lose.
Only the choice among idle workers changes: which task runs next is still admission's
call, and waiting tasks still take released workers in arrival order. Pure logic, so it
is unit-tested without processes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from zako_server.protocol import ReuseKey
from zako_server.server.worker_handle import WorkerState

# Held texts worth more than a cold worker: below this, sending them costs well under a
# millisecond, less than the warm isolate of another key that taking the holder could cost.
HOLD_MIN_BYTES = 64 << 10


class Candidate(Protocol):
    """What `choose` reads of a worker (WorkerHandle has both)."""

    @property
    def state(self) -> WorkerState: ...

    @property
    def warm_key(self) -> ReuseKey | None: ...

    @property
    def sources(self) -> Holder | None: ...


class Holder(Protocol):
    """What `choose` asks of a worker's source mirror (code_mirror.SourceMirror)."""

    def held_bytes(self, digests: Iterable[str]) -> int: ...


def choose(
    idle: Sequence[Candidate],
    key: ReuseKey | None,
    digests: Mapping[str, str] | None = None,
    tree: str | None = None,
) -> int:
    """Index in `idle` (longest idle first) of the worker to hand out; -1 if none is idle.

    `digests` are the task's own files (path -> digest), `tree` the digest of its tree's
    pack, which a worker holds as one unit (one lookup, whatever the tree's size).
    Entries whose state is no longer "idle" are skipped (the pool drops them lazily).
    """
    wanted = [*digests.values()] if digests else []
    if tree is not None:
        wanted.append(tree)
    first = cold = holder = -1
    most = HOLD_MIN_BYTES - 1
    for index, worker in enumerate(idle):
        if worker.state != "idle":
            continue
        if key is not None and worker.warm_key == key:
            return index
        if first < 0:
            first = index
        if wanted:
            mirror = worker.sources
            held = 0 if mirror is None else mirror.held_bytes(wanted)
            if held > most:
                holder, most = index, held
        if cold < 0 and worker.warm_key is None:
            cold = index
            if key is None and not wanted:
                return index
    if holder >= 0:
        return holder
    return cold if cold >= 0 else first
