"""RunningTask.parse: what codec.decode leaves unchecked (a dict's values) fails the task
with ValueError, never the worker."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

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


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"modules": {"main.js": 1}}, "modules must map"),
        ({"modules": {1: "x"}}, "modules must map"),
        ({"digests": {"main.js": None}}, "digests and sources"),
        ({"sources": {"d": b"x"}}, "digests and sources"),
        ({"tree_texts": {"d": 2}}, "digests and sources"),
        ({"context": TaskContext("build", "t", {"a": 1}, False)}, "labels must map"),  # type: ignore[dict-item]
    ],
)
async def test_a_value_that_is_not_a_string_is_refused(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        RunningTask.parse(_frame(**changes))
