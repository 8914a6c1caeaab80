"""The pipe framing, as the parent parses it: frames out of arbitrarily cut chunks."""

from __future__ import annotations

import pytest

from zako_server import protocol
from zako_server.protocol import FrameParser, ProtocolError

MESSAGES = [
    {"ev": "started", "id": "t1"},
    {"ev": "done", "id": "t1", "ok": True, "value": '"é ✓"'},
    {"ev": "log", "id": "t2", "message": "x" * 70_000},
]
STREAM = b"".join(protocol.encode(m) for m in MESSAGES)


@pytest.mark.parametrize("cut", [1, 3, 4, 5, 4096, 65_536, len(STREAM)])
def test_frames_come_out_whole_however_the_bytes_are_cut(cut):
    parser = FrameParser()
    out = []
    for start in range(0, len(STREAM), cut):
        out += parser.feed(STREAM[start : start + cut])
    assert out == MESSAGES
    assert parser.pending == 0


def test_a_truncated_frame_is_held_back_and_shows_as_pending():
    parser = FrameParser()
    assert parser.feed(STREAM[:-10]) == MESSAGES[:2]
    assert parser.pending > 0


@pytest.mark.parametrize(
    "frame",
    [
        protocol.HEADER.pack(3) + b"{x}",  # not JSON
        protocol.HEADER.pack(2) + b"[]",  # not an object
        protocol.HEADER.pack(2) + b"\xff\xfe",  # not UTF-8
        protocol.HEADER.pack(protocol.MAX_FRAME_BYTES + 1),  # a corrupt length prefix
    ],
)
def test_corrupt_frames_raise_protocol_error(frame):
    with pytest.raises(ProtocolError):
        FrameParser().feed(frame)


def test_encode_keeps_non_ascii_as_utf8():
    frame = protocol.encode({"v": "é"})
    assert frame[protocol.HEADER.size :] == '{"v":"é"}'.encode()
