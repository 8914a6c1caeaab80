"""The pipe protocol: framing out of arbitrarily cut chunks, and every frame type's round
trip through `encode` / `decode`, which also refuse what is not a frame."""

from __future__ import annotations

import json

import msgspec
import pytest

from zako_server import codec
from zako_server.codec import BadFrame, FrameParser, ProtocolError
from zako_server.protocol import (
    PARENT_ONLY,
    CancelFrame,
    DoneEvent,
    ExitFrame,
    FailureReason,
    Frame,
    GcEvent,
    GcFrame,
    HeapFigures,
    JsError,
    LogEvent,
    ReadyEvent,
    RunFrame,
    StartedEvent,
    TaskContext,
)

RUN = RunFrame(
    "t1",
    "main.js",
    {"main.js": "module.exports = require('./lib')", "lib.js": "module.exports = 'é'"},
    '{"n": 1}',
    TaskContext("config", "t1", {"team": "core"}, True, epoch_ms=1_700_000_000_000, seed="s"),
    2.5,
    64 << 20,
    65536,
    1 << 20,
    "acme",
    500,
)
# The pipe shape of a run whose texts the worker keeps (server/code_mirror.py): files by
# digest, only the texts it lacks, what it must forget, prepared code by digest.
RUN_BY_DIGEST = RunFrame(
    "t2",
    "main.js",
    {"big.js": "inline"},
    "",
    TaskContext("build", "t2", {}, False),
    1.0,
    64 << 20,
    65536,
    1 << 20,
    None,
    0,
    prepared={"lib.ts": {"esm": True, "code_digest": "c" * 64, "map": ";AAAA"}},
    digests={"main.js": "a" * 64, "lib.ts": "b" * 64, "big.js": "d" * 64},
    sources={"a" * 64: "module.exports = 1", "c" * 64: "exports.x = 1"},
    forget=["e" * 64],
)
HEAP = HeapFigures(1, 2, 3)
FRAMES = [
    RUN,
    CancelFrame("t1"),
    GcFrame(),
    ExitFrame(),
    ReadyEvent(42, "14.4", "0.14.0"),
    StartedEvent("t1"),
    LogEvent("t2", "warn", "x" * 70_000, 1.5),
    DoneEvent("t1", 0.001, 0.002, HEAP, 0, True, value='"é ✓"'),
    DoneEvent(
        "t1",
        0.0,
        0.0,
        None,
        3,
        False,
        reason=FailureReason.SYNTAX_ERROR,
        error=JsError("SyntaxError", "Unexpected end", "SyntaxError: ...", "main.js", 1, 18),
    ),
    GcEvent(HEAP, HeapFigures(1, 1, 3), 100, 90),
]
STREAM = b"".join(codec.encode(f) for f in FRAMES)
# The code cache's fields (issue 15): a run by digest, done events with its figures.
CODE_CACHE_FRAMES = [
    RUN_BY_DIGEST,
    DoneEvent(
        "t2",
        0.0,
        0.0,
        HEAP,
        0,
        True,
        value="1",
        uncacheable=True,
        compiled_hits=3,
        compiled_misses=1,
    ),
    DoneEvent(
        "t3",
        0.0,
        0.0,
        None,
        0,
        False,
        reason=FailureReason.INTERNAL,
        error=JsError("InternalError", "lacks", ""),
        missing=["a" * 64],
    ),
]


@pytest.mark.parametrize("frame", CODE_CACHE_FRAMES, ids=["run", "done", "missing"])
def test_the_code_cache_fields_come_back_as_they_were_sent(frame):
    assert codec.decode(codec.encode(frame)[codec.HEADER.size :]) == frame


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: type(f).__name__)
def test_every_frame_comes_back_as_it_was_sent(frame):
    encoded = codec.encode(frame)
    (length,) = codec.HEADER.unpack_from(encoded)
    assert length == len(encoded) - codec.HEADER.size
    assert codec.decode(encoded[codec.HEADER.size :]) == frame


def test_a_failure_reason_comes_back_as_the_enum():
    done = codec.decode(codec.encode(FRAMES[-2])[codec.HEADER.size :])
    assert isinstance(done, DoneEvent) and done.reason is FailureReason.SYNTAX_ERROR
    assert not done.ok and FRAMES[-3].ok


def test_the_wire_names_each_frame_by_op_or_ev():
    def tag(frame: Frame) -> tuple[str, str]:
        raw = json.loads(codec.encode(frame)[codec.HEADER.size :])
        return ("op", raw["op"]) if "op" in raw else ("ev", raw["ev"])

    assert [tag(f) for f in FRAMES] == [
        ("op", "run"),
        ("op", "cancel"),
        ("op", "gc"),
        ("op", "exit"),
        ("ev", "ready"),
        ("ev", "started"),
        ("ev", "log"),
        ("ev", "done"),
        ("ev", "done"),
        ("ev", "gc"),
    ]


@pytest.mark.parametrize("cut", [1, 3, 4, 5, 4096, 65_536, len(STREAM)])
def test_frames_come_out_whole_however_the_bytes_are_cut(cut):
    parser = FrameParser()
    bodies = []
    for start in range(0, len(STREAM), cut):
        bodies += parser.feed(STREAM[start : start + cut])
    assert [codec.decode(b) for b in bodies] == FRAMES
    assert parser.pending == 0


def test_a_truncated_frame_is_held_back_and_shows_as_pending():
    parser = FrameParser()
    assert len(parser.feed(STREAM[:-10])) == len(FRAMES) - 1
    assert parser.pending > 0


@pytest.mark.parametrize(
    "body",
    [b"{x}", b"[]", b"\xff\xfe"],  # not JSON, not an object, not UTF-8
)
def test_what_is_not_a_json_object_is_a_protocol_error(body):
    with pytest.raises(ProtocolError) as caught:
        codec.decode(body)
    assert not isinstance(caught.value, BadFrame)  # the stream is not to be trusted


def test_a_corrupt_length_prefix_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        FrameParser().feed(codec.HEADER.pack(codec.MAX_FRAME_BYTES + 1))


@pytest.mark.parametrize(
    ("raw", "tag", "task_id"),
    [
        ({"op": "reboot"}, "reboot", None),
        ({"ev": "done", "id": "t1"}, "done", "t1"),  # fields missing
        ({"op": "cancel", "id": "t1", "why": "x"}, "cancel", "t1"),  # an unknown field
        ({"op": "cancel", "id": 7}, "cancel", None),  # a wrong type
        ({"ev": "log", "id": "t", "level": "loud", "message": "", "ts": 1.0}, "log", "t"),
        ({"ev": "started", "id": True}, "started", None),
        ({**json.loads(codec.encode(RUN)[4:]), "timeout_s": "2"}, "run", "t1"),
        ({**json.loads(codec.encode(RUN)[4:]), "context": {"kind": "build"}}, "run", "t1"),
        ({**json.loads(codec.encode(FRAMES[-2])[4:]), "reason": "bored"}, "done", "t1"),
        ({**json.loads(codec.encode(FRAMES[-2])[4:]), "heap": {"used": 1.5}}, "done", "t1"),
    ],
)
def test_an_object_that_is_not_a_frame_is_a_bad_frame_naming_what_it_could(raw, tag, task_id):
    with pytest.raises(BadFrame) as caught:
        codec.decode(json.dumps(raw).encode())
    assert (caught.value.tag, caught.value.id) == (tag, task_id)


def test_optional_fields_may_be_null_and_integers_pass_for_floats():
    raw = json.loads(codec.encode(RUN)[4:])
    raw["timeout_s"] = 3
    raw["context"]["epoch_ms"] = raw["context"]["seed"] = raw["reuse"] = None
    frame = codec.decode(json.dumps(raw).encode())
    assert isinstance(frame, RunFrame) and frame.timeout_s == 3 and frame.reuse_key is None
    assert frame.context.epoch_ms is None and frame.context.seed is None


def test_encode_keeps_non_ascii_as_utf8_and_replaces_lone_surrogates():
    frame = codec.encode(StartedEvent("é"))
    assert frame[codec.HEADER.size :] == '{"ev":"started","id":"é"}'.encode()
    log = codec.decode(codec.encode(LogEvent("t", "info", "a\ud800b", 1.0))[4:])
    assert isinstance(log, LogEvent) and log.message == "a?b"


def test_the_reuse_key_needs_a_tenant_and_room_for_a_task():
    assert RUN.reuse_key == ("acme", "config", False)  # config with system access
    context = TaskContext("config", "t", {}, False)
    assert RunFrame("t", "m", {}, "", context, 1, 1, 1, 1, "a", 1).reuse_key == (
        "a",
        "config",
        True,
    )
    assert RunFrame("t", "m", {}, "", context, 1, 1, 1, 1, "a", 0).reuse_key is None
    assert RunFrame("t", "m", {}, "", context, 1, 1, 1, 1, None, 9).reuse_key is None


def test_only_protocol_types_encode():
    with pytest.raises(TypeError):
        codec.encode({"ev": "started", "id": "t1"})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        codec.encode(StartedEvent(object()))  # type: ignore[arg-type]


def test_a_frame_written_by_hand_decodes_whatever_its_key_order():
    raw = json.loads(codec.encode(RUN)[4:])
    shuffled = dict(reversed(list(raw.items())))
    assert not json.dumps(shuffled).startswith('{"op"')
    assert codec.decode(json.dumps(shuffled).encode()) == RUN


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"context": {"kind": "build"}}, r"task_id.*\$\.context"),  # a field missing
        # The types inside maps are checked too: RunningTask.parse never sees a non-string.
        ({"modules": {"main.js": 1}}, r"\$\.modules"),
        ({"modules": {"main.js": ["x"]}}, r"\$\.modules"),
        ({"digests": {"main.js": None}}, r"\$\.digests"),
        ({"sources": {"d": 3}}, r"\$\.sources"),
        ({"tree_texts": {"d": 2}}, r"\$\.tree_texts"),
        (
            {"context": {**json.loads(codec.encode(RUN)[4:])["context"], "labels": {"a": 1}}},
            r"\$\.context\.labels",
        ),
    ],
)
def test_a_bad_frame_says_which_field_is_wrong(changes, where):
    raw = {**json.loads(codec.encode(RUN)[4:]), **changes}
    with pytest.raises(BadFrame, match="malformed run frame: .*" + where) as caught:
        codec.decode(json.dumps(raw).encode())
    assert (caught.value.tag, caught.value.id) == ("run", "t1")


def test_fields_left_at_their_default_stay_off_the_wire():
    raw = json.loads(codec.encode(StartedEvent("t1"))[4:])
    assert raw == {"ev": "started", "id": "t1"}
    done = json.loads(codec.encode(FRAMES[-3])[4:])
    assert "missing" not in done and "uncacheable" not in done


@pytest.mark.parametrize("name", PARENT_ONLY)
def test_the_parent_only_fields_never_travel(name):
    with pytest.raises(TypeError, match="stays in the parent"):
        codec.encode(msgspec.structs.replace(RUN, **{name: {"a.js": {}}}))
    raw = {**json.loads(codec.encode(RUN)[4:]), name: {"a.js": {}}}
    with pytest.raises(BadFrame) as caught:
        codec.decode(json.dumps(raw).encode())
    assert (caught.value.tag, caught.value.id) == ("run", "t1")
