"""#12 item 6: a failure is reported as what it is.

Each case once came out wrong: a negative column that failed the event's encoding
(INTERNAL), a Proxy whose traps throw (DEADLOCK), user data choosing the reason
(MODULE_NOT_FOUND), NaN input that passed validation, a deep result that overflowed the
stack with a RangeError naming no limit. Real server, real workers.
"""

from __future__ import annotations

import json

import grpc
import pytest

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc

DEPTH_LIMIT = 500  # the prelude's MAX_RESULT_DEPTH, documented in README (Security → Limits)


async def run(target: str, source: str, input_json: str = "") -> pb.RunResponse:
    async with grpc.aio.insecure_channel(target) as channel:
        return await pb_grpc.ExecutorStub(channel).Run(
            pb.RunRequest(task=pb.Task(source=source, input_json=input_json)), timeout=30
        )


async def test_an_eval_with_its_own_source_url_is_a_js_error_not_internal(zako_server):
    reply = await run(zako_server.target, "eval(\"throw new Error('x')\\n//# sourceURL=main.js\")")
    failed = reply.failed
    assert failed.reason == pb.FAILURE_REASON_JS_ERROR, failed
    assert (failed.error.name, failed.error.message) == ("Error", "x")
    assert failed.error.line >= 0 and failed.error.column >= 0  # encodable as uint32


@pytest.mark.parametrize(
    "thrown",
    [
        "new Proxy({}, { get() { throw new Error('trap') } })",
        "new Proxy({}, { get() { throw new Error('trap') }, getPrototypeOf() { throw 1 } })",
        "new Proxy(new Error('inner'), { get() { throw new Error('trap') } })",
    ],
)
async def test_a_rejection_with_a_throwing_proxy_is_a_js_error_not_a_deadlock(zako_server, thrown):
    for source in (f"module.exports = Promise.reject({thrown})", f"throw {thrown}"):
        reply = await run(zako_server.target, source)
        assert reply.failed.reason == pb.FAILURE_REASON_JS_ERROR, (source, reply.failed)


async def test_user_data_does_not_choose_the_failure_reason(zako_server):
    reply = await run(
        zako_server.target, "throw Object.assign(new Error('mine'), { code: 'MODULE_NOT_FOUND' })"
    )
    assert reply.failed.reason == pb.FAILURE_REASON_JS_ERROR
    assert reply.failed.error.message == "mine"
    # The host's own error keeps its reason, even when the task catches and rethrows it.
    rethrown = await run(zako_server.target, "try { require('./nope') } catch (e) { throw e }")
    assert rethrown.failed.reason == pb.FAILURE_REASON_MODULE_NOT_FOUND


@pytest.mark.parametrize("value", ["NaN", "[1, Infinity]", '{"a": -Infinity}'])
async def test_non_json_numbers_in_the_input_are_invalid_argument(zako_server, value):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await run(zako_server.target, "module.exports = 1", input_json=value)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "is not JSON" in caught.value.details()


def _nested(depth: int) -> str:
    return (
        f"let v = 0; for (let i = 0; i < {depth}; i++) v = i % 2 ? [v] : {{ k: v }};"
        " module.exports = v"
    )


async def test_a_result_at_the_depth_limit_completes_and_parses(zako_server):
    reply = await run(zako_server.target, _nested(DEPTH_LIMIT))
    assert reply.WhichOneof("outcome") == "completed", reply.failed
    value, depth = json.loads(reply.completed.result.value_json), 0
    while not isinstance(value, int):
        value, depth = (value[0] if isinstance(value, list) else value["k"]), depth + 1
    assert depth == DEPTH_LIMIT


@pytest.mark.parametrize("depth", [DEPTH_LIMIT + 1, 5_000, 200_000])
async def test_a_deeper_result_fails_naming_the_limit(zako_server, depth):
    reply = await run(zako_server.target, _nested(depth))
    failed = reply.failed
    assert failed.reason == pb.FAILURE_REASON_NOT_SERIALIZABLE, failed
    assert failed.error.name == "RangeError"
    assert f"nested deeper than {DEPTH_LIMIT} levels" in failed.error.message
