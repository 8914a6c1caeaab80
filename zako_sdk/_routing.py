"""Which replica a hermetic task goes to: its action digest, ranked by rendezvous hashing.

    pb.Task ──action_key──▶ SHA-256 over what decides the outcome (tree, entry, source,
                            input, context, labels, epoch, seed)
          key ──rendezvous_order(targets)──▶ replicas by descending SHA-256(target, key)

A replica keeps the outcomes of hermetic tasks (its action cache) and the blobs and
compiled code of their trees; another replica has none of it. So a repeated task is
worth sending where it went before, and an identical task in flight at the same time
too (the server runs it once and both take the outcome). Rendezvous (highest random
weight) hashing gets that without any shared state: every client ranks the replicas
the same way for the same task, whatever order it lists them in; a replica that leaves
moves only the tasks it ranked first (to their second choice), and one that cools down
(it refused for capacity, or cannot be reached) is skipped for the next in the ranking.

The key is the client's own: the server's action digest also covers its runtime's
version, which only makes the server's key finer, never two tasks the same that this
one tells apart. The timeout, priority, resources and isolate choice are left out on
purpose: they do not change a hermetic task's value (the server does not cache an
outcome that depended on a limit).

Pure: no I/O, unit-tested.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from zako_sdk.proto.zako.v1 import executor_pb2 as pb

__all__ = ["action_key", "rendezvous_order", "routable"]


def routable(task: pb.Task) -> bool:
    """Whether `task` goes by its action digest: hermetic (no system access, whose clock
    and randomness are real) and using the cache (CACHE_POLICY_SKIP neither reads nor
    writes it, so nothing is gained on any particular replica: round robin spreads it)."""
    return not task.system_access and task.cache != pb.CACHE_POLICY_SKIP


def _framed(parts: list[str]) -> bytes:
    # Length-prefixed, so that no two ways of splitting the same bytes collide; joined
    # once and hashed in one call (a dozen update() calls cost twice as much per task).
    out = []
    for text in parts:
        data = text.encode("utf-8", "surrogatepass")
        out.append(len(data).to_bytes(8, "big"))
        out.append(data)
    return b"".join(out)


def action_key(task: pb.Task) -> bytes:
    """SHA-256 over everything of `task` that decides a hermetic outcome (see above)."""
    parts = [
        "zako.v1 action",
        task.tree.hash if task.HasField("tree") else "",
        task.entry_name or "main.js",
        task.source,
    ]
    for module in task.modules:  # inline modules, in their order (the server sorts)
        parts += (module.name, module.digest.hash if module.HasField("digest") else module.source)
    parts += (task.input_json or "null", str(task.context or pb.CONTEXT_KIND_BUILD))
    for key, value in sorted(task.labels.items()):
        parts += (key, value)
    parts.append(f"{task.epoch.seconds}.{task.epoch.nanos}" if task.HasField("epoch") else "")
    parts.append(task.seed)
    return hashlib.sha256(_framed(parts)).digest()


def rendezvous_order(key: bytes, targets: Sequence[str]) -> list[int]:
    """Indexes of `targets`, the best replica for `key` first (highest random weight).

    rendezvous_order(action_key(task), ["zako-0:50051", "zako-1:50051"])  # e.g. [1, 0]
    """
    weights = [
        int.from_bytes(hashlib.sha256(target.encode() + b"\0" + key).digest()[:8], "big")
        for target in targets
    ]
    # Ties (never, in practice) broken by the target, so every client agrees.
    return sorted(range(len(targets)), key=lambda i: (-weights[i], targets[i]))
