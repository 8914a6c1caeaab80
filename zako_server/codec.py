"""The codec of the pipe protocol: how the frames of protocol.py travel between the pool
(parent) and a V8 worker process (child), and how a reader tells a bad one apart.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON (one
object, tagged by "op" parent->child or "ev" child->parent). JSON rather than protobuf:
the messages are small, few and internal, JSON keeps them readable in a debugger and
needs no second code generator; the task's input and result already travel as JSON text
and pass through untouched. `encode` and `decode` are the one place where a frame
becomes JSON and back; `read_body` and `FrameParser` cut frame bodies out of a stream.

msgspec does both directions, typed: protocol.py's Structs are the schema, and its
decoder checks every field's type (and Literal, enum, unknown and missing keys) while it
parses, in C. This is the per-task path of both processes, one encode and two decodes a
task on each side. Measured against the orjson-plus-checks codec it replaced (one
process, 50,000 rounds each): a RunFrame encodes in 1.0 us instead of 7.2 and decodes in
2.1 instead of 15.3; a done event 0.7 and 1.3 instead of 3.8 and 8.9; and the hand-made
type checker it needed is gone.

Its own concern, apart from the messages: protocol.py says what the two processes tell
each other (its docstrings are the specification), this module only how.

Imported by both processes, so it must stay free of gRPC, protobuf and V8.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

import msgspec

from zako_server.protocol import PARENT_ONLY, ChildEvent, Frame, ParentFrame, RunFrame

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


_FRAME_TYPES: tuple[type, ...] = (*ParentFrame.__args__, *ChildEvent.__args__)
_ENCODER = msgspec.json.Encoder()
# Per tag key: the union a frame with that key is one of (msgspec picks the member by
# the tag's value), its decoder, and the tags it knows (to name an unknown one).
_UNIONS: dict[str, Any] = {"op": ParentFrame, "ev": ChildEvent}
_PARENT = msgspec.json.Decoder(ParentFrame)
_CHILD = msgspec.json.Decoder(ChildEvent)
_TAGS: dict[str, frozenset[str]] = {
    key: frozenset(t.__struct_config__.tag for t in union.__args__)
    for key, union in _UNIONS.items()
}


def encode(frame: Frame) -> bytes:
    """Serialize one frame as a length-prefixed UTF-8 JSON object."""
    if type(frame) not in _FRAME_TYPES:
        raise TypeError(f"a {type(frame).__name__} is not a frame")
    if type(frame) is RunFrame and _holds_parent_only(frame):
        raise TypeError(f"a run frame holding {', '.join(PARENT_ONLY)} stays in the parent")
    try:
        body = _ENCODER.encode(frame)
    except UnicodeEncodeError:
        # A lone surrogate in a string from V8: replaced, never a lost frame.
        text = json.dumps(msgspec.to_builtins(frame), ensure_ascii=False, separators=(",", ":"))
        body = text.encode("utf-8", "replace")
    return HEADER.pack(len(body)) + body


def _holds_parent_only(frame: RunFrame) -> bool:
    """Whether a field PARENT_ONLY names is set (spelled out: this is on every run
    frame's way, both ways; tests/test_protocol.py tries each name PARENT_ONLY lists)."""
    return frame.tree_files is not None or frame.tree_prepared is not None


def decode(body: bytes | bytearray) -> Frame:
    """One frame from its JSON body. Raises BadFrame for a JSON object that is not a
    frame, ProtocolError for anything that is not a JSON object.

    Our own encoder writes the tag key first, so the body's first bytes pick the
    decoder; anything else (a hand-written frame in a test) is parsed once untyped to
    find its key, then converted."""
    frame: Frame
    try:
        if body.startswith(b'{"op"'):
            frame = _PARENT.decode(body)
        elif body.startswith(b'{"ev"'):
            frame = _CHILD.decode(body)
        else:
            raw = _untyped(body)
            frame = msgspec.convert(raw, _UNIONS["op" if "op" in raw else "ev"])
    except msgspec.ValidationError as exc:
        raise _bad(body, str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from exc
    if type(frame) is RunFrame and _holds_parent_only(frame):
        raise _bad(body, f"{', '.join(PARENT_ONLY)} never travel")
    return frame


def _untyped(body: bytes | bytearray) -> dict[str, Any]:
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ProtocolError("frame is not a JSON object")
    return raw


def _bad(body: bytes | bytearray, why: str) -> ProtocolError:
    """The error for a body that parsed but is not a frame: BadFrame naming what can be
    read of it, or ProtocolError if it is not even an object (the error path only)."""
    try:
        raw = _untyped(body)
    except ProtocolError as exc:
        return exc
    key = "op" if "op" in raw else "ev"
    tag = raw.get(key)
    if tag not in _TAGS[key]:
        return BadFrame(f"unknown frame {key} {tag!r}", tag, raw.get("id"))
    return BadFrame(f"malformed {tag} frame: {why}", tag, raw.get("id"))


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
