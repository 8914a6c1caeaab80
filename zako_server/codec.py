"""The codec of the pipe protocol: how the frames of protocol.py travel between the pool
(parent) and a V8 worker process (child), and how a reader tells a bad one apart.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON (one
object, tagged by "op" parent->child or "ev" child->parent). JSON rather than protobuf:
the messages are small, few and internal, JSON keeps them readable in a debugger and
needs no second code generator; the task's input and result already travel as JSON text
and pass through untouched. `encode` and `decode` are the one place where a dataclass
becomes a JSON object and back, checking each field's type on the way in; `read_body`
and `FrameParser` cut frame bodies out of a stream.

Its own concern, apart from the messages: protocol.py says what the two processes tell
each other (its docstrings are the specification), this module only how, and it is the
per-task hot path. Its tables (field names, tag keys, one decoder per frame type) are
built once, at import, from the dataclasses (a new frame type joins _PARENT or _CHILD),
so encoding or decoding a frame does no reflection.

Imported by both processes, so it must stay free of gRPC, protobuf and V8.
"""

from __future__ import annotations

import asyncio
import json
import struct
import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from enum import Enum
from typing import Any, Literal

import orjson

from zako_server.protocol import (
    CancelFrame,
    DoneEvent,
    ExitFrame,
    Frame,
    GcEvent,
    GcFrame,
    HeapFigures,
    JsError,
    LogEvent,
    LogsEvent,
    PingFrame,
    PongEvent,
    ReadyEvent,
    RunFrame,
    StartedEvent,
    TaskContext,
    WithdrawFrame,
)

HEADER = struct.Struct(">I")
# A frame carries at most one task (sources + input) or one result; the server's own
# limits keep those far below this. It only guards against a corrupted length prefix.
MAX_FRAME_BYTES = 512 * 1024 * 1024


class ProtocolError(Exception):
    """The peer sent something that is not a frame of this protocol."""


class BadFrame(ProtocolError):
    """A whole JSON object that is not a valid frame. The stream itself is intact, so
    the reader may skip it; `tag` ("op" or "ev" value) and `id` are what could be read of
    it (a worker answers a malformed run with an internal failure: one done per run)."""

    def __init__(self, why: str, tag: object, task_id: object) -> None:
        super().__init__(why)
        self.tag = tag if isinstance(tag, str) else None
        self.id = task_id if isinstance(task_id, str) else None


# Whether a dataclass field travels: not one whose metadata is protocol.PARENT_ONLY.
def _on_pipe(f: Any) -> bool:
    return bool(f.metadata.get("pipe", True))


def _to_json(value: Any) -> dict[str, Any]:
    """The JSON encoder's hook for dataclasses (enums are str and need none)."""
    names = _FIELD_NAMES.get(type(value))
    if names is None:
        raise TypeError(f"a {type(value).__name__} is not part of the pipe protocol")
    tag = _TAG_KEYS.get(type(value))
    out = {name: getattr(value, name) for name in names}
    if tag is not None:
        out[tag] = value.TAG
    return out


# orjson does the JSON both ways: it encodes a task's frame 3x and parses one 3x faster
# than the json module (measured on a RunFrame: 24 -> 7 us and 15 -> 5 us), and this is
# the per-task path of both processes. Dataclasses go through `_to_json` (which leaves
# out the fields that stay in the parent, and adds the tag), never orjson's own.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS
# The fallback for what orjson refuses to encode: a lone surrogate in a string from V8
# (replaced, never a lost frame) or an int beyond 64 bits.
_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_to_json).encode


def encode(frame: Frame) -> bytes:
    """Serialize one frame as a length-prefixed UTF-8 JSON object."""
    if type(frame) not in _TAG_KEYS:
        raise TypeError(f"a {type(frame).__name__} is not a frame")
    try:
        body = orjson.dumps(frame, default=_to_json, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        body = _encode_json(frame).encode("utf-8", "replace")
    return HEADER.pack(len(body)) + body


class _Field:
    """How one field of a frame is checked (and built, for nested types) on decode.

    `exact` holds the JSON types that pass unchanged, tested with one set lookup: the
    common case, on the per-task path. Everything else goes through `check`."""

    __slots__ = ("build", "choices", "exact", "name", "optional", "types")

    def __init__(self, name: str, hint: Any) -> None:
        self.name = name
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        args = typing.get_args(hint) if union else ()
        self.optional = type(None) in args
        if args:
            (hint,) = [a for a in args if a is not type(None)]
        self.choices: frozenset[Any] | None = None
        self.build: Any = None
        origin = typing.get_origin(hint)
        if origin is Literal:
            self.choices = frozenset(typing.get_args(hint))
            self.types: tuple[type, ...] = (str,)
        elif origin is not None:
            self.types = (origin,)
        elif isinstance(hint, type) and issubclass(hint, Enum):
            self.types, self.build = (str,), hint
        elif isinstance(hint, type) and is_dataclass(hint):
            self.types, self.build = (dict,), _decoder(hint)
        elif hint is float:
            self.types = (float, int)
        else:
            self.types = (hint,)
        plain = self.choices is None and self.build is None
        self.exact = frozenset(
            (self.types if plain else ()) + ((type(None),) if self.optional else ())
        )

    def check(self, value: Any) -> Any:
        if value is None and self.optional:
            return None
        if not isinstance(value, self.types) or (
            isinstance(value, bool) and bool not in self.types
        ):
            raise TypeError(f"{self.name} is {type(value).__name__}")
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{self.name} {value!r} is not one of {sorted(self.choices)}")
        return value if self.build is None else self.build(value)


def _decoder(cls: type) -> Any:
    hints = typing.get_type_hints(cls)
    wired = [g for g in fields(cls) if _on_pipe(g)]
    plan = [(f.name, f.exact, f.check) for f in (_Field(g.name, hints[g.name]) for g in wired)]
    required = frozenset(
        f.name for f in wired if f.default is MISSING and f.default_factory is MISSING
    )

    def build(raw: dict[str, Any]) -> Any:
        kwargs = {}
        for name, exact, check in plan:
            if name in raw:
                value = raw[name]
                kwargs[name] = value if type(value) in exact else check(value)
        if len(kwargs) != len(raw):
            raise ValueError(f"unknown keys {sorted(set(raw) - set(kwargs))}")
        missing = required.difference(kwargs) if len(kwargs) < len(plan) else ()
        if missing:
            raise ValueError(f"missing {', '.join(sorted(missing))}")
        return cls(**kwargs)

    return build


_PARENT = (RunFrame, CancelFrame, WithdrawFrame, GcFrame, PingFrame, ExitFrame)
_CHILD = (ReadyEvent, StartedEvent, LogsEvent, LogEvent, DoneEvent, GcEvent, PongEvent)
_TAG_KEYS: dict[type, str] = {cls: "op" for cls in _PARENT} | {cls: "ev" for cls in _CHILD}
_FIELD_NAMES: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls) if _on_pipe(f))
    for cls in (*_PARENT, *_CHILD, TaskContext, HeapFigures, JsError)
}
_DECODERS: dict[str, dict[str, Any]] = {
    "op": {cls.TAG: _decoder(cls) for cls in _PARENT},
    "ev": {cls.TAG: _decoder(cls) for cls in _CHILD},
}


def decode(body: bytes | bytearray) -> Frame:
    """One frame from its JSON body. Raises BadFrame for a JSON object that is not a
    frame, ProtocolError for anything that is not a JSON object."""
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ProtocolError("frame is not a JSON object")
    key = "op" if "op" in raw else "ev"
    tag = raw.pop(key, None)
    build = _DECODERS[key].get(tag) if isinstance(tag, str) else None
    if build is None:
        raise BadFrame(f"unknown frame {key} {tag!r}", tag, raw.get("id"))
    try:
        return build(raw)
    except (TypeError, ValueError) as exc:
        raise BadFrame(f"malformed {tag} frame: {exc}", tag, raw.get("id")) from exc


def _check_length(length: int) -> None:
    if length > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {length} bytes exceeds {MAX_FRAME_BYTES}")


async def read_body(reader: asyncio.StreamReader) -> bytes | None:
    """Read one frame's body (for `decode`); None at a clean end of stream."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("stream ended inside a frame header") from exc
        return None
    (length,) = HEADER.unpack(header)
    _check_length(length)
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError("stream ended inside a frame") from exc


class FrameParser:
    """Frame bodies out of a byte stream fed in arbitrary chunks (a protocol's
    data_received), for readers that want no task and no StreamReader between the pipe
    and the frames. Bodies, not frames: one that does not decode is skipped by the
    reader, and the ones after it still arrive."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back (non-zero at EOF: a truncated frame)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Every frame body completed by `data`; raises ProtocolError on a corrupt length."""
        buffer = self._buffer
        buffer += data
        bodies = []
        start, end = 0, len(buffer)
        while end - start >= HEADER.size:
            (length,) = HEADER.unpack_from(buffer, start)
            _check_length(length)
            stop = start + HEADER.size + length
            if stop > end:
                break
            bodies.append(bytes(buffer[start + HEADER.size : stop]))
            start = stop
        if start:
            del buffer[:start]
        return bodies
