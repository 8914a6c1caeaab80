"""The pipe protocol between the pool (parent) and a V8 worker process (child).

Frames are a 4-byte big-endian length followed by that many bytes of UTF-8 JSON (one
object). JSON rather than protobuf: the messages are small, few and internal, JSON keeps
them readable in a debugger and needs no second code generator; the task's input and
result already travel as JSON text and pass through untouched.

The child reads frames on stdin and writes frames on a private duplicate of its
original stdout; its fd 1 is pointed at stderr so that nothing V8 or a library prints
can corrupt the frame stream.

Parent -> child ("op"):
    run     {"op":"run","id":str,"entry":str,"modules":{name:source},"input":str,
             "context":{"kind":str,"task_id":str,"labels":{..},"system_access":bool},
             "timeout_s":float,"max_heap_bytes":int,"max_log_bytes":int,
             "max_result_bytes":int}
            `entry` names the entry module; it is one of `modules`.
    cancel  {"op":"cancel","id":str}
    gc      {"op":"gc"}            -> one "gc" event (after the current task, if any)
    exit    {"op":"exit"}          -> the child closes its V8 instances and exits 0

Child -> parent ("ev"):
    ready   {"ev":"ready","pid":int,"v8_version":str,"mini_racer_version":str}
    started {"ev":"started","id":str}
    log     {"ev":"log","id":str,"level":"debug|info|warn|error","message":str,"ts":float}
    done    {"ev":"done","id":str,"ok":bool,"value":str (ok), "reason":str (not ok),
             "error":{"name","message","stack","module","line","column","code"} (not ok),
             "cpu_s":float,"run_s":float,"heap":{"used":int,"total":int,"limit":int},
             "logs_dropped":int}
            reason is one of FAILURE_REASONS, or "cancelled". In `error`, module/line/column
            are null when no task frame is known (e.g. a non-Error throw, a timeout), and
            "code" is the thrown error's `code` property as a string (e.g.
            "MODULE_NOT_FOUND"), or null.
    gc      {"ev":"gc","before":{heap},"after":{heap},"rss_before":int,"rss_after":int}
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import IO, Any

HEADER = struct.Struct(">I")
# A frame carries at most one task (sources + input) or one result; the server's own
# limits keep those far below this. It only guards against a corrupted length prefix.
MAX_FRAME_BYTES = 512 * 1024 * 1024

FAILURE_REASONS = (
    "js_error",
    "syntax_error",
    "timeout",
    "out_of_memory",
    "deadlock",
    "not_serializable",
    "result_too_large",
    "worker_lost",
    "module_not_found",
    "capability_denied",
    "internal",
)


# The warm-isolate key of a task, (tenant, context kind, hermetic): the pool picks a worker
# by it and the worker keys its isolates by it, so both sides must compute it alike.
ReuseKey = tuple[str, str, bool]


def is_hermetic(kind: str, system_access: bool) -> bool:
    """Only a config context with system access is not hermetic (both sides' rule)."""
    return not (kind == "config" and system_access)


class ProtocolError(Exception):
    """The peer sent something that is not a frame of this protocol."""


# Made once: json.dumps/loads build or look these up on every call with options.
_encode_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_decode_json = json.JSONDecoder().decode


def encode(message: dict[str, Any]) -> bytes:
    """Serialize one message as a length-prefixed frame."""
    body = _encode_json(message).encode()
    return HEADER.pack(len(body)) + body


def _decode_body(body: bytes | bytearray) -> dict[str, Any]:
    try:
        message = _decode_json(body.decode())
    except ValueError as exc:
        raise ProtocolError(f"frame is not JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise ProtocolError("frame is not a JSON object")
    return message


def _check_length(length: int) -> None:
    if length > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {length} bytes exceeds {MAX_FRAME_BYTES}")


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """Read one message; None at a clean end of stream."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ProtocolError("stream ended inside a frame header") from exc
        return None
    (length,) = HEADER.unpack(header)
    _check_length(length)
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise ProtocolError("stream ended inside a frame") from exc
    return _decode_body(body)


class FrameParser:
    """Frames out of a byte stream fed in arbitrary chunks (a protocol's data_received),
    for readers that want no task and no StreamReader between the pipe and the frames."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back (non-zero at EOF: a truncated frame)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Every message completed by `data`; raises ProtocolError on a corrupt frame."""
        buffer = self._buffer
        buffer += data
        messages = []
        start, end = 0, len(buffer)
        while end - start >= HEADER.size:
            (length,) = HEADER.unpack_from(buffer, start)
            _check_length(length)
            stop = start + HEADER.size + length
            if stop > end:
                break
            messages.append(_decode_body(buffer[start + HEADER.size : stop]))
            start = stop
        if start:
            del buffer[:start]
        return messages


def read_frame_sync(stream: IO[bytes]) -> dict[str, Any] | None:
    """Blocking twin of read_frame, for simple tools and tests."""
    header = stream.read(HEADER.size)
    if not header:
        return None
    if len(header) < HEADER.size:
        raise ProtocolError("stream ended inside a frame header")
    (length,) = HEADER.unpack(header)
    _check_length(length)
    body = stream.read(length)
    if len(body) < length:
        raise ProtocolError("stream ended inside a frame")
    return _decode_body(body)
