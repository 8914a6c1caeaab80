"""One transform isolate: a MiniRacer with the bundle loaded, answering one file a call.

A TransformPool process (server/transforms.py) makes one at start and keeps it; calls are
synchronous (the process does nothing else), and a file's answer is plain JSON data.
"""

from __future__ import annotations

import json
from typing import Any

from py_mini_racer import MiniRacer

from zako_server.transform import bundle

HEAP_BYTES = 512 * 1024 * 1024


class Transformer:
    """sucrase + es-module-lexer in a V8 isolate of their own."""

    def __init__(self) -> None:
        self._mr = MiniRacer()
        self._mr.set_hard_memory_limit(HEAP_BYTES)
        self._mr.eval(bundle.script())

    def transform(self, name: str, source: str, ext: str, type_: str) -> dict[str, Any]:
        """{esm, code, map} or {error: {name, message, line, column}} for one file."""
        call = "JSON.stringify(__zakoTransform({},{},{},{}))".format(
            *(json.dumps(v, ensure_ascii=True) for v in (name, source, ext, type_))
        )
        answer = self._mr.eval(call)
        if not isinstance(answer, str):  # JSON.stringify always answers a string here
            raise TypeError(f"transformer answered {type(answer).__name__}, not JSON text")
        result: dict[str, Any] = json.loads(answer)
        return result

    def close(self) -> None:
        self._mr.close()
