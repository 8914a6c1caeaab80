"""RunningTask.parse, and the types inside a run frame's maps: the codec refuses a
frame whose maps hold anything but strings, so parse never sees one."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
import pytest

from zako_server import codec
from zako_server.codec import BadFrame
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
    ("changes", "where"),
    [
        ({"modules": {"main.js": 1}}, "$.modules"),
        ({"modules": {"main.js": ["x"]}}, "$.modules"),
        ({"digests": {"main.js": None}}, "$.digests"),
        ({"sources": {"d": 3}}, "$.sources"),
        ({"tree_texts": {"d": 2}}, "$.tree_texts"),
        (
            {
                "context": {
                    "kind": "build",
                    "task_id": "t",
                    "labels": {"a": 1},
                    "system_access": False,
                }
            },
            "$.context.labels",
        ),
    ],
)
async def test_a_value_that_is_not_a_string_is_refused_by_the_codec(
    changes: dict[str, Any], where: str
) -> None:
    """The maps' values are part of the schema: such a frame never reaches parse."""
    raw = {**json.loads(codec.encode(_frame())[codec.HEADER.size :]), **changes}
    with pytest.raises(BadFrame, match=re.escape(where)) as caught:
        codec.decode(json.dumps(raw).encode())
    assert (caught.value.tag, caught.value.id) == ("run", "t")
