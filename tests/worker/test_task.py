"""RunningTask.parse: a run frame's task, its string maps as they came (the types inside
them are the codec's to check: tests/test_protocol.py)."""

from __future__ import annotations

from typing import Any

import msgspec

from zako_server.protocol import RunFrame, TaskContext
from zako_server.worker.task import RunningTask


class _Name(str):
    """A str subclass: still a string wherever a frame wants one."""


def _frame(**changes: Any) -> RunFrame:
    context = TaskContext("build", "t", {}, False)
    frame = RunFrame(
        "t", "main.js", {"main.js": "1"}, "", context, 5.0, 1 << 26, 1 << 16, 1 << 20, None, 0
    )
    return msgspec.structs.replace(frame, **changes)


async def test_string_maps_parse() -> None:
    job = RunningTask.parse(_frame(modules={_Name("main.js"): _Name("1")}))
    assert job.text("main.js") == "1"
    labeled = _frame(context=TaskContext("build", "t", {"a": "b"}, False))
    assert RunningTask.parse(labeled).frame.context.labels == {"a": "b"}
