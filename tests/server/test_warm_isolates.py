"""Warm isolate reuse through a real server: speed must never cost isolation.

Every test runs on a one-worker server, so consecutive tasks of one tenant really land in
the same worker and, when the rules allow, in the same isolate (`warm_isolate` says so).
"""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from tests.server.test_security import ACME, BETA, TOKENS, bearer
from tests.server.test_service import task
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc

WARM_UP = "module.exports = (x) => x + 1"
HERMETIC_EPOCH_MS = 1_704_067_200_000  # the virtual clock of a task that names no epoch


class Runner:
    """Sequential unary runs on one channel; each returns (value or failure, warm)."""

    def __init__(self, channel: grpc.aio.Channel, token: str | None = None) -> None:
        self.stub = pb_grpc.ExecutorStub(channel)
        self.metadata = tuple(bearer(token).items()) if token else None
        self.count = 0

    async def reply(self, source: str, **fields) -> pb.RunResponse:
        self.count += 1
        # These tests watch isolates: every task must run, none be an action-cache hit.
        fields.setdefault("cache", pb.CACHE_POLICY_SKIP)
        return await self.stub.Run(
            pb.RunRequest(task=task(f"t{self.count}", source, **fields)),
            timeout=30,
            metadata=self.metadata,
        )

    async def value(self, source: str, **fields) -> tuple[object, bool]:
        reply = await self.reply(source, **fields)
        assert reply.WhichOneof("outcome") == "completed", reply
        result = reply.completed.result
        return json.loads(result.value_json), result.timings.warm_isolate


@pytest.fixture
async def runner(server_factory):
    server = server_factory(min_workers=1, max_workers=1)
    async with grpc.aio.insecure_channel(server.target) as channel:
        yield Runner(channel)


async def test_a_tenants_next_task_runs_in_the_warm_isolate(runner):
    assert (await runner.value(WARM_UP, input_json="1")) == (2, False)
    assert (await runner.value(WARM_UP, input_json="2")) == (3, True)


async def test_fresh_isolate_opts_out_and_may_patch_built_ins(runner):
    await runner.value(WARM_UP)
    patch = "Array.prototype.zz = function () { return 7 }; module.exports = [].zz()"
    assert (await runner.value(patch, fresh_isolate=True)) == (7, False)
    # The fresh isolate is gone; the warm one, kept aside meanwhile, never saw the patch.
    assert (await runner.value("module.exports = typeof [].zz")) == ("undefined", True)


async def test_strict_code_patching_a_frozen_built_in_is_rerun_fresh(runner):
    await runner.value(WARM_UP)
    await runner.value(WARM_UP)
    patch = "'use strict'; Array.prototype.zz = function () { return 7 }; module.exports = [].zz()"
    assert (await runner.value(patch)) == (7, False)
    await runner.value(WARM_UP)
    value, warm = await runner.value("module.exports = typeof [].zz")
    assert (value, warm) == ("undefined", True)


async def test_a_task_that_logged_before_failing_on_a_frozen_built_in_is_told_why(runner):
    await runner.value(WARM_UP)
    source = (
        "'use strict'; module.exports = async () => { console.log('before');"
        " await new Promise((r) => r()); Object.prototype.polyfill = 1; }"
    )
    reply = await runner.reply(source)
    # The log went out with the first report, so the task is not re-run behind its back.
    assert reply.WhichOneof("outcome") == "failed"
    error = reply.failed.error
    assert error.name == "TypeError" and "fresh_isolate" in error.message


async def test_globals_a_task_adds_replaces_or_deletes_are_gone_for_the_next(runner):
    await runner.value(WARM_UP)
    mess = (
        "globalThis.leak = 42; undeclared = 1; globalThis.JSON = null;"
        " delete globalThis.Math; module.exports = 1"
    )
    assert (await runner.value(mess)) == (1, True)
    check = "module.exports = [typeof leak, typeof undeclared, JSON.stringify([1]), Math.max(1, 2)]"
    assert (await runner.value(check)) == (["undefined", "undefined", "[1]", 2], True)


async def test_ordinary_code_may_assign_inherited_names_on_its_own_objects(runner):
    source = (
        "'use strict'; class E extends Error { constructor(m) { super(m);"
        " this.name = 'E' } }; const o = {}; o.toString = () => 'x';"
        " function F() {} F.prototype.constructor = F;"
        " module.exports = [new E('m').name, String(o), new F().constructor === F]"
    )
    assert (await runner.value(source)) == (["E", "x", True], False)
    assert (await runner.value(source)) == (["E", "x", True], True)


async def test_regexp_legacy_statics_do_not_carry_the_last_match(runner):
    await runner.value("/(secret\\d+)/.exec('xx secret123 yy'); module.exports = 1")
    value, warm = await runner.value(
        "module.exports = [typeof RegExp.$1 === 'string' ? RegExp.$1 : null,"
        " RegExp.lastMatch === undefined ? null : RegExp.lastMatch]"
    )
    assert warm and "secret123" not in json.dumps(value)


async def test_module_state_is_per_task(runner):
    counter = "let n = 0; module.exports = () => ++n"
    assert [await runner.value(counter) for _ in range(3)] == [(1, False), (1, True), (1, True)]


async def test_a_module_that_closes_its_wrapper_leaves_nothing_behind(runner):
    await runner.value(WARM_UP)
    for escape in (
        "}), 'x', 'y'); let leaked = 1; (function () {",
        "}); let leaked = 1; f((function () {",
        "(0, eval)('var leaked = 5'); module.exports = 1",
    ):
        await runner.reply(escape)  # rejected or contained; either way:
        value, _ = await runner.value("module.exports = typeof leaked")
        assert value == "undefined", escape


async def test_tenants_never_share_an_isolate(server_factory):
    server = server_factory(auth_tokens=TOKENS, min_workers=1, max_workers=1)
    async with grpc.aio.insecure_channel(server.target) as channel:
        acme, beta = Runner(channel, ACME), Runner(channel, BETA)
        assert (await acme.value(WARM_UP))[1] is False
        assert (await acme.value("globalThis.mine = 1; module.exports = 1"))[1] is True
        assert (await beta.value("module.exports = typeof mine")) == ("undefined", False)
        assert (await beta.value(WARM_UP))[1] is True


async def test_system_access_never_leaks_into_a_hermetic_task(runner):
    config = pb.CONTEXT_KIND_CONFIG
    assert (
        await runner.value("module.exports = typeof Date.now()", context=config, system_access=True)
    )[0] == "number"
    assert (
        await runner.value("module.exports = typeof Date.now()", context=config, system_access=True)
    )[1] is True
    value, _ = await runner.value(
        "module.exports = [Date.now(), typeof WeakRef, typeof Temporal]", context=config
    )
    assert value == [HERMETIC_EPOCH_MS, "undefined", "undefined"]


async def test_an_isolate_is_retired_after_a_timeout_and_after_its_task_budget(server_factory):
    server = server_factory(min_workers=1, max_workers=1, isolate_max_tasks=3)
    async with grpc.aio.insecure_channel(server.target) as channel:
        runner = Runner(channel)
        await runner.value(WARM_UP)
        reply = await runner.reply("while (true) {}", timeout=Duration(nanos=200_000_000))
        assert reply.failed.reason == pb.FAILURE_REASON_TIMEOUT
        warm = [(await runner.value(WARM_UP))[1] for _ in range(5)]
        assert warm == [False, True, True, False, True]


async def test_reuse_can_be_switched_off(server_factory):
    server = server_factory(min_workers=1, max_workers=1, isolate_reuse="never")
    async with grpc.aio.insecure_channel(server.target) as channel:
        runner = Runner(channel)
        assert [(await runner.value(WARM_UP))[1] for _ in range(3)] == [False] * 3
        caps = await runner.stub.Capabilities(pb.CapabilitiesRequest(), timeout=10)
        assert caps.isolate_reuse is False


async def test_capabilities_say_isolates_are_reused_by_default(runner):
    caps = await runner.stub.Capabilities(pb.CapabilitiesRequest(), timeout=10)
    assert caps.isolate_reuse is True


async def test_sloppy_writes_to_built_ins_are_silently_ignored_when_warm(runner):
    """Documents a semantic of frozen intrinsics (README, warm isolates): JavaScript
    ignores a sloppy-mode write to a frozen object, so such code needs fresh_isolate."""
    await runner.value(WARM_UP)
    assert (await runner.value("Array.prototype.qq = 1; module.exports = [].qq === undefined")) == (
        True,
        True,
    )
    assert (
        await runner.value(
            "Array.prototype.qq = 1; module.exports = [].qq === undefined", fresh_isolate=True
        )
    ) == (False, False)


async def test_a_module_that_closes_its_wrapper_early_is_a_syntax_error(runner):
    """A source cannot end the module wrapper and run code outside it."""
    await runner.value(WARM_UP)
    for escape in (
        "}), 'x', 'y'); let leaked = 1; (function () {",
        "}); let leaked = 1; f((function () {",
    ):
        reply = await runner.reply(escape)
        assert reply.WhichOneof("outcome") == "failed", (escape, reply)
        assert reply.failed.reason == pb.FAILURE_REASON_SYNTAX_ERROR, (escape, reply)


async def test_a_wrapper_escape_that_parses_cannot_declare_globals_for_the_next_task(runner):
    """This escape is valid JavaScript once wrapped: its `var` and function declarations
    run outside the module function, where a plain script would make them globals."""
    await runner.value(WARM_UP)
    await runner.reply("}), 'x', 'y'); var leaked = 1; function leakedFn() {} ((function () {")
    value, _ = await runner.value("module.exports = [typeof leaked, typeof leakedFn]")
    assert value == ["undefined", "undefined"]


async def test_the_first_task_in_a_new_isolate_cannot_patch_built_ins_for_the_next(runner):
    """The isolate must be hardened before its first reusable task runs, not after."""
    await runner.reply("Array.prototype.first = 1; Object.prototype.own = 2; module.exports = 1")
    value, _ = await runner.value("module.exports = [typeof [].first, typeof ({}).own]")
    assert value == ["undefined", "undefined"]


@pytest.mark.parametrize(
    "mess",
    [
        "Object.defineProperty(globalThis, 'stuck', { value: 1, configurable: false })",
        "Object.defineProperty(globalThis, 'stuck', { get() { return 1 }, configurable: true })",
        "Object.setPrototypeOf(globalThis, { stuck: 1 })",
        "Object.preventExtensions(globalThis)",
        "Object.freeze(globalThis)",
    ],
)
async def test_a_global_object_a_task_reshaped_is_not_seen_by_the_next(runner, mess):
    """Globals that cannot simply be deleted again (non-configurable, on the global's
    prototype, or a global object closed to new properties) must not reach the next task:
    the reset undoes them or the isolate is retired."""
    await runner.value(WARM_UP)
    await runner.reply(f"{mess}; module.exports = 1")
    value, _ = await runner.value(
        "globalThis.added = 1; module.exports ="
        " [typeof stuck, typeof added, Object.isExtensible(globalThis)]"
    )
    assert value == ["undefined", "number", True]


async def test_state_left_on_the_runtimes_own_objects_does_not_carry_over(runner):
    """console and the zako:core / zako:context objects are the runtime's, not frozen
    built-ins; a task must not be able to leave data on them for the next task."""
    await runner.value(WARM_UP)
    stash = (
        "require('zako:core').stash = 's1'; require('zako:context').stash = 's2';"
        " console.stash = 's3'; console.log = () => {}; module.exports = 1"
    )
    assert (await runner.value(stash))[0] == 1
    check = (
        "console.log('still logs'); module.exports = [require('zako:core').stash ?? null,"
        " require('zako:context').stash ?? null, console.stash ?? null]"
    )
    reply = await runner.reply(check)
    assert reply.WhichOneof("outcome") == "completed", reply
    assert json.loads(reply.completed.result.value_json) == [None, None, None]
    assert [line.message for line in reply.logs] == ["still logs"]


async def test_timers_and_microtasks_a_task_left_pending_do_not_run_in_the_next(runner):
    """Work a task scheduled but did not wait for belongs to that task alone."""
    config = {"context": pb.CONTEXT_KIND_CONFIG, "system_access": True}
    await runner.value(WARM_UP, **config)
    await runner.value(
        "module.exports = () => { setTimeout(() => { globalThis.late = 1 }, 20);"
        " Promise.resolve().then(() => { globalThis.soon = 1 }); return 1 }",
        **config,
    )
    value, _ = await runner.value(
        "module.exports = async () => { await new Promise((r) => setTimeout(r, 100));"
        " return [typeof late, typeof soon] }",
        **config,
    )
    assert value == ["undefined", "undefined"]


async def test_an_isolate_is_retired_after_running_out_of_memory(server_factory):
    """Out of memory leaves the isolate in doubt; the next task gets a fresh one, in the
    same worker process (the heap limit stops the task, not the worker)."""
    server = server_factory(min_workers=1, max_workers=1)
    async with grpc.aio.insecure_channel(server.target) as channel:
        runner = Runner(channel)
        await runner.value(WARM_UP)
        assert (await runner.value(WARM_UP))[1] is True
        reply = await runner.reply(
            "const a = []; while (true) a.push(new Array(1e5).fill(1.5));",
            resources=pb.ResourceRequests(memory_bytes=32 << 20),
            timeout=Duration(seconds=20),
        )
        assert reply.failed.reason == pb.FAILURE_REASON_OUT_OF_MEMORY, reply
        assert [await runner.value(WARM_UP, input_json="1") for _ in range(2)] == [
            (2, False),
            (2, True),
        ]
        stats = await runner.stub.Stats(pb.StatsRequest(), timeout=10)
        assert stats.pool.crashed_total == 0 and stats.pool.started_total == 1, stats.pool


async def test_a_build_task_after_system_access_config_tasks_is_still_hermetic(runner):
    """System access granted to config tasks must not leak into a hermetic context."""
    config = {"context": pb.CONTEXT_KIND_CONFIG, "system_access": True}
    assert (await runner.value("module.exports = typeof Date.now()", **config))[0] == "number"
    assert (await runner.value("module.exports = typeof Date.now()", **config))[1] is True
    for _ in range(2):  # the second build task runs warm, if at all, in a build isolate
        value, _ = await runner.value(
            "module.exports = () => [Date.now(), typeof WeakRef]", context=pb.CONTEXT_KIND_BUILD
        )
        assert value == [HERMETIC_EPOCH_MS, "undefined"]


async def test_an_isolate_is_retired_after_a_syntax_error_which_still_reports_its_heap(runner):
    """A module that did not compile may have declared things outside the wrapper; the
    isolate is not reused, but nothing is running in it, so its heap can still be read."""
    await runner.value(WARM_UP)
    reply = await runner.reply("module.exports = (")
    assert reply.failed.reason == pb.FAILURE_REASON_SYNTAX_ERROR
    assert reply.failed.heap.used_bytes > 0
    assert (await runner.value(WARM_UP, input_json="1")) == (2, False)


# A call that a hermetic context refuses with a CapabilityError. (Issue 12's repro used
# Date.now(), refused then; the test failed with 'from task 1' before the fix.)
DENIED_CALL = "require('fs').readFileSync('x')"


async def test_a_capability_error_cannot_carry_state_to_the_next_task(runner):
    """Issue 12 item 1: the CapabilityError class is the prelude's, shared by every task in
    the isolate; a task planting data on its prototype must not reach the next task."""
    await runner.value(WARM_UP)
    plant = (
        f"try {{ {DENIED_CALL} }} catch (e) {{ try {{"
        " Object.getPrototypeOf(e).leak = 'from task 1';"
        " e.constructor.leak = 'ctor' } catch (x) {} } module.exports = 1"
    )
    assert (await runner.value(plant))[0] == 1
    value, warm = await runner.value(
        f"try {{ {DENIED_CALL} }} catch (e) {{ module.exports = [e.name, e.leak ?? null,"
        " e.constructor.leak ?? null, Object.isFrozen(Object.getPrototypeOf(e))] }"
    )
    assert warm is True
    assert value == ["CapabilityError", None, None, True]


async def test_console_counters_and_timers_are_per_task(runner):
    await runner.value(WARM_UP)
    source = "console.count('x'); console.time('t'); module.exports = 1"
    await runner.value(source)
    reply = await runner.reply("console.count('x'); console.timeEnd('t'); module.exports = 1")
    assert reply.completed.result.timings.warm_isolate
    assert [(line.level, line.message) for line in reply.logs] == [
        (pb.LOG_LEVEL_INFO, "x: 1"),
        (pb.LOG_LEVEL_WARN, "Warning: No such label 't' for console.timeEnd()"),
    ]


async def test_builtins_and_lazy_globals_a_task_changes_are_new_for_the_next(runner):
    """Buffer, URL, process, crypto and the built-in modules are made per task: what one
    task writes on them (or on their prototypes) is gone for the next task."""
    await runner.value(WARM_UP)
    tamper = (
        "'use strict'; Buffer.prototype.leak = 1; URL.leak = 2; process.env.LEAK = '3';"
        " require('path').join = () => 'hijacked'; require('events').prototype.emit = null;"
        " crypto.randomUUID = () => 'fixed'; require('node:util').leak = 4;"
        " globalThis.TextEncoder = 'replaced'; module.exports = 1"
    )
    assert (await runner.value(tamper))[0] == 1
    check = (
        "const E = require('events'); module.exports = [typeof Buffer.prototype.leak,"
        " typeof URL.leak, process.env.LEAK ?? null, require('path').join('a', 'b'),"
        " typeof E.prototype.emit, crypto.randomUUID().length, typeof require('util').leak,"
        " typeof TextEncoder]"
    )
    value, warm = await runner.value(check)
    assert warm is True
    assert value == ["undefined", "undefined", None, "a/b", "function", 36, "undefined", "function"]
