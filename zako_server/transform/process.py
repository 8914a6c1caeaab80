"""The code a transform pool process runs (server/transforms.py starts them, by spawn).

Each process holds one Transformer for its whole life, made by `init` (the pool's
initializer) and kept in `_state`: a process-pool worker has no other place to keep
state between calls, and this process does nothing but transform.
"""

from __future__ import annotations

import atexit
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zako_server.transform.engine import Transformer

# The server imports this module only to name its functions for the pool; V8 is loaded
# in the pool's processes (init), never in the server's.
_state: dict[str, Transformer] = {}


def init() -> None:
    """Load sucrase and the lexer once, before the first batch arrives."""
    from zako_server.transform.engine import Transformer

    transformer = Transformer()
    _state["transformer"] = transformer
    atexit.register(transformer.close)


def transform_batch(items: list[tuple[str, str, str, str]]) -> list[dict[str, Any]]:
    """(name, source, ext, type) -> the transformer's answer, for each item in order."""
    transformer = _state.get("transformer")
    if transformer is None:
        init()
        transformer = _state["transformer"]
    answers = []
    for item in items:
        try:
            answers.append(transformer.transform(*item))
        except Exception as exc:  # e.g. the isolate's heap limit on a huge file
            # That file's answer is an error (thrown only if a task loads it), and the
            # isolate, which may be unusable now, is replaced for the next file.
            answers.append(
                {
                    "error": {
                        "name": "TransformError",
                        "message": f"the transform stage failed on this file: {exc}",
                        "line": None,
                        "column": None,
                    }
                }
            )
            transformer.close()
            init()
            transformer = _state["transformer"]
    return answers


def warm() -> bool:
    """A no-op call that makes the pool start its processes (and load the bundle)."""
    return "transformer" in _state
