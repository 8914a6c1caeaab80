"""Context kinds and the sandbox, through a real server: what a script can and cannot reach."""

from __future__ import annotations

import json
import time

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc

HERMETIC = [
    pb.CONTEXT_KIND_PACKAGE,
    pb.CONTEXT_KIND_BUILD,
    pb.CONTEXT_KIND_RULE,
    pb.CONTEXT_KIND_TOOLCHAIN,
    pb.CONTEXT_KIND_CONFIG,
]


@pytest.fixture
async def run(zako_server):
    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)

        async def run(source, **fields):
            fields.setdefault("timeout", Duration(seconds=10))
            return await stub.Run(pb.RunRequest(task=pb.Task(source=source, **fields)), timeout=30)

        yield run


# What cannot be deterministic is absent in hermetic contexts: feature detection must see
# the truth, so none of these is a stub that throws when used. (Timers are present: they
# run on the task's virtual clock, see test_hermetic.py.)
ABSENT_WHEN_HERMETIC = [
    "WeakRef",
    "FinalizationRegistry",
    "SharedArrayBuffer",
    "Atomics",
    "WebAssembly",
    "Temporal",
]


@pytest.mark.parametrize("kind", HERMETIC)
async def test_what_hermetic_contexts_cannot_make_deterministic_is_absent(run, kind):
    names = json.dumps(ABSENT_WHEN_HERMETIC)
    reply = await run(
        f"module.exports = () => {names}"
        ".map((n) => [n, typeof globalThis[n], eval('typeof ' + n)])",
        context=kind,
    )
    value = json.loads(reply.completed.result.value_json)
    assert value == [[name, "undefined", "undefined"] for name in ABSENT_WHEN_HERMETIC]


@pytest.mark.parametrize("kind", HERMETIC)
async def test_hermetic_clock_and_randomness_are_the_tasks_own(run, kind):
    source = """module.exports = () => [Date.now(), new Date().toISOString(), typeof Math.random(),
      new Intl.NumberFormat().format(1234.5), typeof Intl, performance.now()]"""
    reply = await run(source, context=kind)
    value = json.loads(reply.completed.result.value_json)
    assert value == [1704067200000, "2024-01-01T00:00:00.000Z", "number", "1,234.5", "object", 0]


async def test_config_with_system_access_gets_clock_randomness_and_timers(run):
    source = """module.exports = async () => {
      const t0 = Date.now();
      await new Promise((resolve) => setTimeout(resolve, 20));
      return { elapsed: Date.now() - t0, r: typeof Math.random(),
               year: new Date(0).getUTCFullYear(),
               n: new Intl.NumberFormat('en-US').format(1234.5) };
    };"""
    reply = await run(source, context=pb.CONTEXT_KIND_CONFIG, system_access=True)
    value = json.loads(reply.completed.result.value_json)
    assert value["elapsed"] >= 15 and value["r"] == "number" and value["year"] == 1970
    assert value["n"] == "1,234.5"


async def test_hermetic_results_are_reproducible(run):
    source = """module.exports = (x) => ({
      globals: Object.getOwnPropertyNames(globalThis).sort(),
      sorted: x.slice().sort(), json: JSON.stringify({b: 1, a: [x.length]}) });"""
    first = await run(source, input_json="[3, 1, 2]", context=pb.CONTEXT_KIND_RULE)
    second = await run(source, input_json="[3, 1, 2]", context=pb.CONTEXT_KIND_RULE)
    assert first.completed.result.value_json == second.completed.result.value_json


@pytest.mark.parametrize(
    "attempt",
    [
        "require('../../etc/passwd')",
        "require('left-pad')",
    ],
)
async def test_require_of_anything_not_given_or_built_in_fails_clearly(run, attempt):
    reply = await run(f"module.exports = () => {attempt}")
    assert reply.failed.reason == pb.FAILURE_REASON_MODULE_NOT_FOUND, reply
    assert "zako:core" in reply.failed.error.message  # it says what is available


@pytest.mark.parametrize(
    "probe",
    [
        "typeof fetch",
        "typeof XMLHttpRequest",
        "typeof Deno",
        "typeof Bun",
        "typeof globalThis.require",
        "typeof load",
        "typeof print",
        "typeof readline",
        "typeof os",
        "typeof quit",
    ],
)
async def test_no_host_objects_reach_the_script(run, probe):
    reply = await run(
        f"module.exports = () => {probe}", context=pb.CONTEXT_KIND_CONFIG, system_access=True
    )
    assert reply.completed.result.value_json == '"undefined"', (probe, reply)


@pytest.mark.parametrize("module", ["fs", "node:fs", "child_process", "http", "net", "os"])
async def test_io_modules_load_but_every_function_refuses_naming_module_and_context(run, module):
    reply = await run(
        f"const m = require('{module}'); module.exports = () => Object.values(m).find("
        "(f) => typeof f === 'function')('x')",
        context=pb.CONTEXT_KIND_RULE,
    )
    assert reply.failed.reason == pb.FAILURE_REASON_CAPABILITY_DENIED, reply
    assert reply.failed.error.name == "CapabilityError"
    name = module.removeprefix("node:")
    assert f"{name}." in reply.failed.error.message
    assert "hermetic 'rule' context" in reply.failed.error.message


@pytest.mark.parametrize("system_access", [False, True])
async def test_pure_queries_answer_and_host_facts_refuse(run, system_access):
    """No context has a terminal or shows the host: isatty is false and os repeats the
    fixed platform `process` gives; the host's own facts stay refused, in every context."""
    source = """const os = require('node:os'), tty = require('tty');
    module.exports = () => {
      const refused = ['hostname', 'cpus', 'totalmem', 'homedir', 'userInfo'].map((f) => {
        try { os[f](); return f; } catch (e) { return e.name; } });
      return [tty.isatty(0), tty.isatty(1), os.platform(), os.arch(), os.type(), refused];
    };"""
    reply = await run(source, context=pb.CONTEXT_KIND_CONFIG, system_access=system_access)
    value = json.loads(reply.completed.result.value_json)
    assert value == [False, False, "linux", "x64", "Linux", ["CapabilityError"] * 5], reply


async def test_process_is_the_runtimes_own_with_nothing_of_the_host(run):
    source = """module.exports = () => [process.env, process.platform, process.cwd(),
      process.argv.length, typeof process.nextTick, typeof process.binding,
      typeof process.dlopen]"""
    reply = await run(source, context=pb.CONTEXT_KIND_CONFIG, system_access=True)
    value = json.loads(reply.completed.result.value_json)
    assert value == [{}, "linux", "/", 2, "function", "undefined", "undefined"]


async def test_dynamic_import_reaches_only_what_require_reaches(run):
    # import() goes through the same module system (issue 13): node:fs is the context's
    # fs, whose I/O is denied at the call, not the host's.
    reply = await run(
        "module.exports = async () => { const fs = await import('fs');\n"
        "  try { fs.readFileSync('/etc/passwd'); return 'read'; }\n"
        "  catch (e) { return [e.name, fs.default === require('fs')]; } }"
    )
    assert reply.completed.result.value_json == '["CapabilityError",true]', reply


async def test_tasks_cannot_see_each_other(run):
    leak = await run(
        "globalThis.secret = 'mine'; Object.prototype.polluted = 1; module.exports = 1"
    )
    assert leak.WhichOneof("outcome") in {"completed", "failed"}
    reply = await run("module.exports = () => [typeof secret, ({}).polluted === undefined]")
    assert reply.completed.result.value_json == '["undefined",true]'


async def test_builtin_modules_describe_the_context(run):
    reply = await run(
        "const ctx = require('zako:context'); const core = require('zako:core');"
        " module.exports = (input, c) => ({ same: ctx.kind === c.kind, kind: c.kind,"
        " labels: c.labels, id: typeof c.taskId, version: typeof core.version })",
        context=pb.CONTEXT_KIND_TOOLCHAIN,
        labels={"team": "build"},
    )
    assert json.loads(reply.completed.result.value_json) == {
        "same": True,
        "kind": "toolchain",
        "labels": {"team": "build"},
        "id": "string",
        "version": "string",
    }


async def test_a_promise_that_can_never_settle_fails_fast_as_deadlock(run):
    started = time.monotonic()
    reply = await run("module.exports = () => new Promise(() => {})", timeout=Duration(seconds=20))
    assert reply.failed.reason == pb.FAILURE_REASON_DEADLOCK, reply
    assert time.monotonic() - started < 2.0


async def test_deadlock_after_timers_ran_out_in_a_config_context(run):
    started = time.monotonic()
    reply = await run(
        "module.exports = async () => { await new Promise(r => setTimeout(r, 10));"
        " return new Promise(() => {}) }",
        context=pb.CONTEXT_KIND_CONFIG,
        system_access=True,
        timeout=Duration(seconds=20),
    )
    assert reply.failed.reason == pb.FAILURE_REASON_DEADLOCK, reply
    assert time.monotonic() - started < 2.0


async def test_heap_limit_from_the_memory_request(run):
    reply = await run(
        "const a = []; while (true) a.push(new Array(1e5).fill(1.5));",
        resources=pb.ResourceRequests(memory_bytes=32 << 20),
    )
    assert reply.failed.reason == pb.FAILURE_REASON_OUT_OF_MEMORY, reply
    after = await run("module.exports = 'fine'")
    assert after.completed.result.value_json == '"fine"'


async def test_cpu_time_is_measured(run):
    reply = await run("let n = 0; for (let i = 0; i < 1e8; i++) n += i; module.exports = n > 0")
    timings = reply.completed.result.timings
    cpu = timings.cpu.ToTimedelta().total_seconds()
    assert cpu > 0.01 and cpu <= timings.run.ToTimedelta().total_seconds() * 2


async def test_every_advertised_builtin_module_loads_by_both_names(zako_server, run):
    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        caps = await pb_grpc.ExecutorStub(channel).Capabilities(
            pb.CapabilitiesRequest(), timeout=10
        )
    names = list(caps.builtin_modules)
    assert {"zako:core", "path", "util", "fs", "buffer"} <= set(names)
    source = (
        f"module.exports = () => [{json.dumps(names)}.map((n) => [n, typeof require(n),"
        " n.startsWith('zako:') || require('node:' + n) === require(n)]),"
        " require.resolve('node:path'), require.resolve('path')]"
    )
    reply = await run(source, context=pb.CONTEXT_KIND_BUILD)
    rows, node_path, path = json.loads(reply.completed.result.value_json)
    functions = ("assert", "assert/strict", "events")
    assert rows == [[n, "function" if n in functions else "object", True] for n in names]
    assert (node_path, path) == ("node:path", "path")


async def test_system_access_has_every_timer_as_node_does(run):
    source = """module.exports = async () => {
      const out = [];
      const never = setTimeout(() => out.push('cleared'), 5).unref();
      clearTimeout(never);
      const every = setInterval(() => {
        out.push('tick');
        if (out.length === 3) clearInterval(every);
      }, 2);
      await new Promise((resolve) => setTimeout(resolve, 40));
      setImmediate((x) => out.push(x), 'immediate');
      await new Promise((resolve) => setTimeout(resolve, 5));
      return [out, typeof +never, never.hasRef(), typeof require('timers').setInterval];
    };"""
    reply = await run(source, context=pb.CONTEXT_KIND_CONFIG, system_access=True)
    value = json.loads(reply.completed.result.value_json)
    assert value == [["tick", "tick", "tick", "immediate"], "number", True, "function"]
