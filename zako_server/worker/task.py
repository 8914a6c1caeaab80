"""A run frame as the worker process holds it while the task runs.

`protocol.decode` has already checked the frame's field types, except what a dict's
values are: `parse` checks those, so a malformed frame fails that one task with
`internal`, never the worker. It also carries the task's mutable progress: its cancel
switch and its log accounting, which the worker's polls and the cancel op both touch.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from zako_server.protocol import ReuseKey, RunFrame


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

    @classmethod
    def parse(cls, frame: RunFrame) -> RunningTask:
        """The task of a run frame; raises ValueError for what decoding cannot check."""
        if not all(
            isinstance(name, str) and isinstance(source, str)
            for name, source in frame.modules.items()
        ):
            raise ValueError("modules must map names to source strings")
        if not all(isinstance(v, str) for v in frame.context.labels.values()):
            raise ValueError("labels must map names to strings")
        return cls(frame, frame.reuse_key)

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
