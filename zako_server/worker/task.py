"""A run frame, validated, as the worker process holds it while the task runs.

The parent has validated the task already (validation.py); this only turns the frame's
JSON into typed fields, so a malformed frame fails that one task with `internal`, never
the worker. It also carries the task's mutable progress: its cancel switch and its log
accounting, which the worker's polls and the cancel op both touch.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from zako_server.protocol import ReuseKey, is_hermetic


@dataclass
class RunningTask:
    """A validated run message."""

    id: str
    entry: str
    modules: dict[str, str]
    input: str
    kind: str
    task_id: str
    labels: dict[str, str]
    system_access: bool
    timeout_s: float
    max_heap_bytes: int
    max_log_bytes: int
    max_result_bytes: int
    reuse: str | None = None
    reuse_max_tasks: int = 0
    # Resolved by a cancel (a future, not an Event: asyncio.wait takes it as it is).
    cancel: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    cancel_why: str = "task was cancelled"
    log_bytes: int = 0
    py_dropped: int = 0
    js_dropped: int = 0
    logs_sent: int = 0
    hardened: bool = False  # runs in an isolate hardened for reuse

    @classmethod
    def parse(cls, msg: dict[str, Any]) -> RunningTask:
        modules = msg["modules"]
        context = msg.get("context") or {}
        if not isinstance(modules, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in modules.items()
        ):
            raise ValueError("modules must map names to source strings")
        return cls(
            id=msg["id"],
            entry=str(msg["entry"]),
            modules=modules,
            input=str(msg.get("input") or ""),
            kind=str(context.get("kind", "build")),
            task_id=str(context.get("task_id", msg["id"])),
            labels={str(k): str(v) for k, v in (context.get("labels") or {}).items()},
            system_access=bool(context.get("system_access", False)),
            timeout_s=float(msg["timeout_s"]),
            max_heap_bytes=int(msg["max_heap_bytes"]),
            max_log_bytes=int(msg["max_log_bytes"]),
            max_result_bytes=int(msg["max_result_bytes"]),
            reuse=None if msg.get("reuse") is None else str(msg["reuse"]),
            reuse_max_tasks=int(msg.get("reuse_max_tasks") or 0),
        )

    @property
    def hermetic(self) -> bool:
        return is_hermetic(self.kind, self.system_access)

    def stop(self, why: str | None = None) -> None:
        if not self.cancel.done():
            if why is not None:
                self.cancel_why = why
            self.cancel.set_result(None)

    @property
    def key(self) -> ReuseKey | None:
        """Which warm isolate may run this task (see isolates.py); None: a fresh one."""
        if self.reuse is None or self.reuse_max_tasks <= 0:
            return None
        return (self.reuse, self.kind, self.hermetic)

    @property
    def dropped(self) -> int:
        return self.js_dropped + self.py_dropped
