"""A run frame as the worker process holds it while the task runs.

`codec.decode` has already checked the frame's field types, except what a dict's
values are: `parse` checks those, so a malformed frame fails that one task with
`internal`, never the worker. It also carries the task's mutable progress: its cancel
switch and its log accounting, which the worker's polls and the cancel op both touch.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from zako_server.protocol import ReuseKey, RunFrame
from zako_server.worker.sources import SourceStore, TreePack


class MissingSources(ValueError):
    """The frame names digests this worker does not hold (the parent's mirror drifted)."""

    def __init__(self, digests: list[str]) -> None:
        super().__init__(f"the worker does not hold module digests {', '.join(digests[:3])}")
        self.digests = digests


@dataclass
class RunningTask:
    """A run frame plus the task's progress."""

    frame: RunFrame
    # Cleared when a frozen built-in makes the task re-run in a fresh isolate.
    key: ReuseKey | None
    # Resolved by a cancel (a future, not an Event: asyncio.wait takes it as it is).
    cancel: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    cancel_why: str = "task was cancelled"
    log_bytes: int = 0
    py_dropped: int = 0
    js_dropped: int = 0
    logs_sent: int = 0
    batch_bytes: int = 0  # bytes of the lines waiting to go out in one LogsEvent
    hardened: bool = False  # runs in an isolate hardened for reuse
    # The task's files (path -> digest, in the tree's order), the texts that came inline
    # (digest -> text) and the worker's store for the rest (worker/sources.py).
    digests: dict[str, str] = field(default_factory=dict)
    inline: dict[str, str] = field(default_factory=dict)
    store: SourceStore = field(default_factory=SourceStore)
    # The transform answers (those kept by digest, parsed), and which came by digest.
    prepared: dict[str, Any] = field(default_factory=dict)
    entries: dict[str, str] = field(default_factory=dict)
    # The task's tree, as the worker holds it (RunFrame.tree): its files are the task's
    # beside `digests`, its answers beside `prepared`.
    tree: TreePack | None = None
    # From the prelude's last report: modules loaded from a kept wrapper / compiled, and
    # whether the task read something outside its cache key (context.taskId).
    compiled: tuple[int, int] = (0, 0)
    uncacheable: bool = False

    @classmethod
    def parse(cls, frame: RunFrame, store: SourceStore | None = None) -> RunningTask:
        """The task of a run frame; raises MissingSources when it names texts the
        worker lacks. Every field's type, the maps' keys and values included, was checked
        when the frame was decoded (codec.py)."""
        store = store if store is not None else SourceStore()
        found = store.resolve(frame)
        if found.missing:
            raise MissingSources(found.missing)
        return cls(
            frame,
            frame.reuse_key,
            digests=found.digests,
            inline=found.inline,
            store=store,
            prepared=found.prepared,
            entries=found.entries,
            tree=found.tree,
        )

    def answer(self, path: str) -> Any:
        """The transform answer for a file (its own or its tree's), or None."""
        found = self.prepared.get(path)
        if found is None and self.tree is not None:
            found = self.tree.prepared.get(path)
        return found

    def text(self, path: str) -> str | None:
        """A file's text, inline or from the worker's store; None: not a file here."""
        digest = self.digests.get(path)
        if digest is None and self.tree is not None:
            digest = self.tree.files.get(path)
        if digest is None:
            return None
        text = self.inline.get(digest)
        return text if text is not None else self.store.texts.get(digest)

    @property
    def id(self) -> str:
        return self.frame.id

    @property
    def timeout_s(self) -> float:
        return self.frame.timeout_s

    @property
    def max_heap_bytes(self) -> int:
        return self.frame.max_heap_bytes

    @property
    def max_log_bytes(self) -> int:
        return self.frame.max_log_bytes

    @property
    def max_result_bytes(self) -> int:
        return self.frame.max_result_bytes

    def stop(self, why: str | None = None) -> None:
        if not self.cancel.done():
            if why is not None:
                self.cancel_why = why
            self.cancel.set_result(None)

    @property
    def dropped(self) -> int:
        return self.js_dropped + self.py_dropped
