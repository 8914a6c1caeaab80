"""The V8 worker process, driven through its real pipes with protocol frames."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from typing import Any

import pytest

from zako_server import codec
from zako_server.protocol import (
    LOG_BATCH_LINES,
    CancelFrame,
    ChildEvent,
    DoneEvent,
    ExitFrame,
    GcEvent,
    GcFrame,
    JsError,
    LogEvent,
    LogsEvent,
    ParentFrame,
    ReadyEvent,
    RunFrame,
    StartedEvent,
    TaskContext,
)

MiB = 1024 * 1024
_ids = itertools.count(1)


class WorkerClient:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.logs: list[LogEvent] = []  # of the last `run`
        self.ready: ReadyEvent | None = None

    def send(self, frame: ParentFrame) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(codec.encode(frame))

    def send_raw(self, message: dict[str, Any]) -> None:
        """A frame the typed API cannot make: what a broken parent might send."""
        assert self.proc.stdin is not None
        body = json.dumps(message).encode()
        self.proc.stdin.write(codec.HEADER.pack(len(body)) + body)

    async def recv(self, timeout: float = 10.0) -> ChildEvent:
        assert self.proc.stdout is not None
        body = await asyncio.wait_for(codec.read_body(self.proc.stdout), timeout)
        assert body is not None, "worker closed its frame stream"
        event = codec.decode(body)
        assert not isinstance(event, ParentFrame), event
        return event

    def submit(
        self,
        modules: dict[str, str] | str,
        *,
        entry: str = "main.js",
        input: str = "",
        kind: str = "build",
        system_access: bool = False,
        timeout_s: float = 5.0,
        max_heap_bytes: int = 64 * MiB,
        max_log_bytes: int = 64 * 1024,
        max_result_bytes: int = MiB,
        labels: dict[str, str] | None = None,
        reuse: str | None = None,
    ) -> str:
        if isinstance(modules, str):
            modules = {entry: modules}
        task_id = f"task-{next(_ids)}"
        context = TaskContext(kind, task_id, labels or {}, system_access)
        self.send(
            RunFrame(
                task_id,
                entry,
                modules,
                input,
                context,
                timeout_s,
                max_heap_bytes,
                max_log_bytes,
                max_result_bytes,
                reuse,
                500,
            )
        )
        return task_id

    async def until_done(self, task_id: str, timeout: float = 10.0) -> list[ChildEvent]:
        """All events of one task, ending with its done event."""
        events: list[ChildEvent] = []
        deadline = time.monotonic() + timeout
        while True:
            event = await self.recv(max(deadline - time.monotonic(), 0.01))
            assert getattr(event, "id", None) == task_id, event
            if isinstance(event, LogsEvent):  # coalesced lines: one LogEvent each here
                assert 0 < len(event.lines) <= LOG_BATCH_LINES, event
                events.extend(LogEvent(event.id, *line) for line in event.lines)
                continue
            events.append(event)
            if isinstance(event, DoneEvent):
                return events

    async def run(self, modules: dict[str, str] | str, **kw: Any) -> DoneEvent:
        """Run one task; returns its done event and keeps its logs in `self.logs`."""
        wait = kw.pop("wait", 10.0)
        task_id = self.submit(modules, **kw)
        events = await self.until_done(task_id, wait)
        assert events[0] == StartedEvent(task_id)
        logs = events[1:-1]
        assert all(isinstance(e, LogEvent) for e in logs), logs
        self.logs = logs  # type: ignore[assignment]
        done = events[-1]
        assert isinstance(done, DoneEvent)
        return done


@pytest.fixture
async def worker():
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "zako_server.worker",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    client = WorkerClient(proc)
    try:
        ready = await client.recv(timeout=60)
        assert isinstance(ready, ReadyEvent), ready
        client.ready = ready
        yield client
    finally:
        if proc.returncode is None:
            try:
                client.send(ExitFrame())
                await asyncio.wait_for(proc.wait(), 10)
            except (OSError, asyncio.TimeoutError):
                proc.kill()
                await proc.wait()


def ok_value(done: DoneEvent) -> Any:
    assert done.ok and done.value is not None, done
    return json.loads(done.value)


def failed(done: DoneEvent, reason: str) -> JsError:
    assert not done.ok, done
    assert done.reason == reason, done
    assert done.error is not None
    return done.error


# ---- basics ---------------------------------------------------------------------------


async def test_ready_reports_versions(worker):
    ready = worker.ready
    assert ready.pid == worker.proc.pid
    assert ready.v8_version[0].isdigit()
    assert ready.mini_racer_version.startswith("0.14")


async def test_hello_world_with_input_and_context(worker):
    done = await worker.run(
        "module.exports = (input, ctx) => ({greeting: 'hello ' + input.name, kind: ctx.kind,\n"
        "  task: ctx.taskId, labels: ctx.labels, system: ctx.systemAccess});",
        input='{"name": "world"}',
        labels={"team": "core"},
    )
    assert ok_value(done) == {
        "greeting": "hello world",
        "kind": "build",
        "task": done.id,  # the context's task id is the run frame's
        "labels": {"team": "core"},
        "system": False,
    }
    assert done.heap is not None
    assert done.heap.limit == 64 * MiB and done.heap.used > 0
    # Measured, not left at the 0.0 the worker starts from; and it ran fresh.
    assert done.cpu_s > 0 and done.run_s > 0 and done.logs_dropped == 0
    assert done.warm is False


async def test_plain_value_export_and_empty_input(worker):
    assert ok_value(await worker.run("module.exports = {a: [1, 'x', null]};")) == {
        "a": [1, "x", None]
    }
    assert ok_value(await worker.run("module.exports = (input) => input;")) is None
    assert ok_value(await worker.run("module.exports = () => undefined;")) is None


async def test_async_function(worker):
    done = await worker.run(
        "const twice = async (n) => { await null; return n * 2; };\n"
        "module.exports = async (input) => ({sum: (await twice(input.n)) + 1});",
        input='{"n": 20}',
    )
    assert ok_value(done) == {"sum": 41}


async def test_fresh_context_per_task(worker):
    await worker.run("globalThis.leak = 42; Object.prototype.polluted = true;")
    done = await worker.run("module.exports = [typeof leak, ({}).polluted === undefined];")
    assert ok_value(done) == ["undefined", True]


async def test_tasks_queue_in_order(worker):
    first = worker.submit("module.exports = 1;")
    second = worker.submit("module.exports = 2;")
    assert ok_value((await worker.until_done(first))[-1]) == 1
    assert ok_value((await worker.until_done(second))[-1]) == 2


# ---- modules --------------------------------------------------------------------------


async def test_require_relative_paths_cycles_and_builtins(worker):
    modules = {
        "main.js": "const a = require('./lib/a.js');\n"
        "const core = require('zako:core');\n"
        "const ctx = require('zako:context');\n"
        "module.exports = () => ({a: a.describe(), version: typeof core.version,\n"
        "  kind: ctx.kind, same: require('./lib/a') === a});",
        "lib/a.js": "exports.name = 'a';\n"
        "const b = require('./b');\n"
        "exports.describe = () => b.seenFromB + '/' + b.util.tag;",
        "lib/b.js": "const a = require('./a.js');\n"
        "exports.seenFromB = 'b saw ' + a.name +\n"
        "  ' partial=' + (a.describe === undefined);\n"
        "exports.util = require('../util');",
        "util.js": "exports.tag = 'util:' + __filename + ':' + __dirname;",
    }
    value = ok_value(await worker.run(modules))
    assert value == {
        "a": "b saw a partial=true/util:util.js:",
        "version": "string",
        "kind": "build",
        "same": True,
    }


async def test_module_not_found(worker):
    modules = {"main.js": "const x = 1;\nconst y = require('./missing');", "lib/other.js": ""}
    error = failed(await worker.run(modules), "module_not_found")
    assert error.code == "MODULE_NOT_FOUND"
    assert "'./missing'" in error.message
    assert "lib/other.js" in error.message and "zako:core" in error.message
    assert (error.module, error.line, error.column) == ("main.js", 2, 11)


async def test_a_bare_name_that_is_neither_a_module_nor_built_in_is_module_not_found(worker):
    error = failed(await worker.run("require('left-pad');"), "module_not_found")
    assert "'left-pad'" in error.message


# ---- errors ---------------------------------------------------------------------------


async def test_throw_has_exact_location(worker):
    done = await worker.run(
        "const a = 1;\nfunction f() {\n    throw new TypeError('bad ' + a);\n"
        "}\nmodule.exports = () => f();"
    )
    error = failed(done, "js_error")
    assert error.name == "TypeError" and error.message == "bad 1"
    assert (error.module, error.line, error.column) == ("main.js", 3, 11)
    assert "at f (main.js:3:11)" in error.stack
    assert "zako:prelude" not in error.stack and "__zako" not in error.stack


async def test_throw_on_line_one_has_author_column(worker):
    error = failed(await worker.run("let x = 1; throw new Error('one');"), "js_error")
    assert (error.module, error.line, error.column) == ("main.js", 1, 18)


async def test_throw_in_required_module(worker):
    modules = {"main.js": "require('./lib/bad');", "lib/bad.js": "\n\n  null.boom;"}
    error = failed(await worker.run(modules), "js_error")
    assert error.name == "TypeError"
    assert (error.module, error.line, error.column) == ("lib/bad.js", 3, 8)
    assert "lib/bad.js:3:8" in error.stack and "main.js:1:1" in error.stack


@pytest.mark.parametrize(
    ("source", "line", "column"),
    [
        ("a b;", 1, 3),
        ("let x = 1;\nlet y = 2;\n  a b;", 3, 5),
        ("const f = () => {\n  return 1;\n}}\n", 3, 2),
    ],
)
async def test_syntax_error_location(worker, source, line, column):
    modules = {"main.js": "require('./lib/broken.js');", "lib/broken.js": source}
    error = failed(await worker.run(modules), "syntax_error")
    assert error.name == "SyntaxError"
    assert (error.module, error.line, error.column) == ("lib/broken.js", line, column)


async def test_rejected_promise(worker):
    error = failed(
        await worker.run(
            "module.exports = async () => {\n  await null;\n  throw new RangeError('late');\n};"
        ),
        "js_error",
    )
    assert error.name == "RangeError" and error.message == "late"
    assert (error.module, error.line) == ("main.js", 3)
    error = failed(
        await worker.run("module.exports = Promise.reject(new Error('plain'));"), "js_error"
    )
    assert error.message == "plain" and error.line == 1


async def test_non_error_throws(worker):
    error = failed(await worker.run("throw 'just a string';"), "js_error")
    assert (error.name, error.message) == ("Error", "just a string")
    error = failed(await worker.run("module.exports = async () => { throw {a: 1}; };"), "js_error")
    assert error.message == '{"a":1}'


async def test_error_code_is_kept(worker):
    error = failed(
        await worker.run("const e = new Error('nope'); e.code = 'E_CUSTOM'; throw e;"), "js_error"
    )
    assert error.code == "E_CUSTOM"


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("({a: {b: () => 1}})", "a function at result.a.b"),
        ("({n: [1, 2n]})", "a BigInt at result.n[1]"),
        ("({s: Symbol('x')})", "a symbol at result.s"),
        ("(() => { const o = {x: {}}; o.x.back = o; return o; })()", "a cycle at result.x.back"),
    ],
)
async def test_not_serializable(worker, expr, fragment):
    error = failed(await worker.run(f"module.exports = {expr};"), "not_serializable")
    assert fragment in error.message, error


async def test_result_too_large(worker):
    error = failed(
        await worker.run("module.exports = 'x'.repeat(5000);", max_result_bytes=1000),
        "result_too_large",
    )
    assert "5002 bytes" in error.message and "1000 bytes" in error.message


async def test_invalid_input_json(worker):
    error = failed(await worker.run("module.exports = (i) => i;", input="{nope"), "js_error")
    assert error.name == "SyntaxError" and "not valid JSON" in error.message


async def test_module_names_that_need_an_alias_keep_their_name(worker):
    modules = {
        "main.js": "require('./my lib/bad file.js');",
        "my lib/bad file.js": "\n  throw new Error('spaced');",
    }
    error = failed(await worker.run(modules), "js_error")
    assert (error.module, error.line, error.column) == ("my lib/bad file.js", 2, 9)
    assert "my lib/bad file.js:2:9" in error.stack


async def test_wrapper_escapes_stay_inside_their_own_task(worker):
    error = failed(await worker.run("})); globalThis.escaped = 1; ((function () {"), "syntax_error")
    assert (error.module, error.line) == ("main.js", 1)
    # A source that does parse outside the wrapper only reaches its own fresh instance.
    escape = "}); globalThis.escaped = 1; (function () {"
    assert ok_value(await worker.run(escape)) == {}
    assert ok_value(await worker.run("module.exports = typeof escaped;")) == "undefined"


async def test_lone_surrogates_do_not_break_frames(worker):
    done = await worker.run("console.log('a\\ud800b'); module.exports = {s: 'x\\udc00'};")
    assert json.loads(done.value) == {"s": "x\udc00"}
    assert worker.logs[0].message == "a?b"


# ---- limits -----------------------------------------------------------------------------


async def test_timeout_of_infinite_loop(worker):
    done = await worker.run("while (true) {}", timeout_s=0.5)
    error = failed(done, "timeout")
    assert error.name == "TimeoutError" and "0.5 s" in error.message
    assert 0.45 <= done.run_s < 1.5
    assert ok_value(await worker.run("module.exports = 'alive';")) == "alive"


async def test_timeout_of_endless_microtasks(worker):
    done = await worker.run("module.exports = async () => { for (;;) await null; };", timeout_s=0.5)
    failed(done, "timeout")
    assert done.run_s < 2
    assert ok_value(await worker.run("module.exports = 'alive';")) == "alive"


async def test_cancel_running_loop(worker):
    task_id = worker.submit("console.log('spinning'); while (true) {}", timeout_s=30)
    assert (await worker.recv()) == StartedEvent(task_id)
    await asyncio.sleep(0.2)
    sent = time.monotonic()
    worker.send(CancelFrame(task_id))
    events = await worker.until_done(task_id, timeout=5)
    elapsed = time.monotonic() - sent
    error = failed(events[-1], "cancelled")
    assert error.name == "CancelledError"
    assert elapsed < 1.0, elapsed
    assert [e.message for e in events if isinstance(e, LogEvent)] == ["spinning"]
    assert ok_value(await worker.run("module.exports = 1;")) == 1


async def test_cancel_of_unknown_id_is_ignored(worker):
    worker.send(CancelFrame("nobody"))
    assert ok_value(await worker.run("module.exports = 3;")) == 3


async def test_deadlock_fails_fast(worker):
    done = await worker.run("module.exports = () => new Promise(() => {});", timeout_s=10)
    error = failed(done, "deadlock")
    assert "can never settle" in error.message
    assert done.run_s < 1.0


async def test_deadlock_after_timers_fails_fast(worker):
    done = await worker.run(
        "module.exports = async () => {\n"
        "  await new Promise((r) => setTimeout(r, 20));\n"
        "  await new Promise(() => {});\n};",
        kind="config",
        system_access=True,
        timeout_s=10,
    )
    failed(done, "deadlock")
    assert done.run_s < 1.0


async def test_out_of_memory_then_next_task(worker):
    done = await worker.run(
        "let a = []; while (true) a.push(new Array(1e5).fill(1));",
        max_heap_bytes=32 * MiB,
        timeout_s=20,
    )
    error = failed(done, "out_of_memory")
    assert str(32 * MiB) in error.message
    assert ok_value(await worker.run("module.exports = [1, 2].length;")) == 2


# ---- capabilities -------------------------------------------------------------------------


# The virtual clock's default epoch (2024-01-01T00:00:00Z) when the frame names none.
DEFAULT_EPOCH_MS = 1_704_067_200_000


@pytest.mark.parametrize(
    "name",
    [
        "WeakRef",
        "FinalizationRegistry",
        "SharedArrayBuffer",
        "Atomics",
        "WebAssembly",
    ],
)
async def test_what_a_hermetic_context_cannot_make_deterministic_is_absent(worker, name):
    value = ok_value(
        await worker.run(
            f"module.exports = [typeof globalThis.{name}, typeof {name}];", kind="rule"
        )
    )
    assert value == ["undefined", "undefined"]


async def test_hermetic_clock_and_randomness_stay_usable(worker):
    value = ok_value(
        await worker.run(
            "module.exports = [Date.now(), new Date().toISOString(), typeof Math.random(),\n"
            "  new Intl.NumberFormat().format(1234.5)];",
            kind="rule",
        )
    )
    assert value == [DEFAULT_EPOCH_MS, "2024-01-01T00:00:00.000Z", "number", "1,234.5"]


async def test_io_in_a_hermetic_context_is_a_capability_error_at_the_call(worker):
    error = failed(
        await worker.run("\nmodule.exports = require('fs').readFileSync('x');", kind="rule"),
        "capability_denied",
    )
    assert error.name == "CapabilityError"
    assert "is not available in a hermetic 'rule' context" in error.message
    assert (error.module, error.line) == ("main.js", 2)


async def test_config_without_system_access_is_hermetic(worker):
    value = ok_value(
        await worker.run("module.exports = [Date.now(), typeof WeakRef];", kind="config")
    )
    assert value == [DEFAULT_EPOCH_MS, "undefined"]


async def test_config_with_system_access(worker):
    done = await worker.run(
        "module.exports = async () => {\n"
        "  const order = [];\n"
        "  const t0 = Date.now();\n"
        "  await new Promise((resolve) => {\n"
        "    setTimeout(() => order.push('late'), 30);\n"
        "    setTimeout(() => order.push('early'), 5);\n"
        "    const never = setTimeout(() => order.push('cleared'), 10);\n"
        "    clearTimeout(never);\n"
        "    setTimeout(resolve, 60);\n"
        "  });\n"
        "  return {order, waited: Date.now() - t0 >= 50, random: typeof Math.random(),\n"
        "    intl: new Intl.NumberFormat('en-US').format(1234.5),\n"
        "    year: new Date().getFullYear() > 2000};\n"
        "};",
        kind="config",
        system_access=True,
    )
    assert ok_value(done) == {
        "order": ["early", "late"],
        "waited": True,
        "random": "number",
        "intl": "1,234.5",
        "year": True,
    }


async def test_system_access_is_only_for_config(worker):
    done = await worker.run("module.exports = Date.now();", kind="build", system_access=True)
    assert ok_value(done) == DEFAULT_EPOCH_MS  # still the virtual clock, not the real one


async def test_timer_callback_error_fails_task(worker):
    error = failed(
        await worker.run(
            "module.exports = () => new Promise(() => {\n"
            "  setTimeout(() => { throw new Error('in timer'); }, 1);\n});",
            kind="config",
            system_access=True,
        ),
        "js_error",
    )
    assert (error.message, error.line) == ("in timer", 2)


async def test_host_api_is_out_of_reach(worker):
    done = await worker.run(
        "let denied = false;\n"
        "try { __zako.poll('guess'); } catch (e) { denied = true; }\n"
        "__zako = null;\n"
        "Error.prepareStackTrace = () => 'mine';\n"
        "console.log('still logging');\n"
        "module.exports = () => { if (!denied) return 'reachable'; throw new Error('x'); };"
    )
    error = failed(done, "js_error")
    assert (error.line, error.stack.startswith("Error: x")) == (6, True)
    assert [e.message for e in worker.logs] == ["still logging"]


# ---- logs -------------------------------------------------------------------------------


async def test_logs_arrive_in_order_before_done(worker):
    done = await worker.run(
        "console.log('plain', 1, {a: [1, 'two']}, null, undefined);\n"
        "console.info('%s is %d', 'x', 42);\n"
        "console.debug('dbg');\n"
        "console.warn('careful');\n"
        "module.exports = async () => {\n"
        "  await null;\n"
        "  const cyc = {name: 'c'}; cyc.self = cyc;\n"
        "  console.error(new Error('shown'), cyc);\n"
        "  require('zako:core').log('via core');\n"
        "  for (let i = 0; i < 100; i++) console.log('n' + i);\n"
        "  return 'ok';\n"
        "};"
    )
    assert ok_value(done) == "ok"
    logs = worker.logs
    assert [(e.level, e.message) for e in logs[:4]] == [
        ("info", "plain 1 { a: [ 1, 'two' ] } null undefined"),
        ("info", "x is 42"),
        ("debug", "dbg"),
        ("warn", "careful"),
    ]
    assert logs[4].level == "error"
    assert logs[4].message.startswith("Error: shown\n    at ")
    assert logs[4].message.endswith("<ref *1> { name: 'c', self: [Circular *1] }")  # as Node
    assert logs[5].message == "via core"
    assert [e.message for e in logs[6:]] == [f"n{i}" for i in range(100)]
    assert all(isinstance(e.ts, float) and e.ts > 1e9 for e in logs)


async def test_log_limit_drops_and_marks(worker):
    done = await worker.run(
        "for (let i = 0; i < 1000; i++) console.log('line ' + i);", max_log_bytes=100
    )
    assert ok_value(done) == {}  # module.exports untouched
    logs = worker.logs
    kept, marker = logs[:-1], logs[-1]
    assert sum(len(e.message) for e in kept) <= 100
    assert done.logs_dropped == 1000 - len(kept)
    assert marker.level == "warn"
    assert marker.message == (
        f"[zako] log limit of 100 bytes or 10000 lines reached; {done.logs_dropped} lines dropped"
    )


async def test_logs_of_a_timed_out_task_are_kept(worker):
    done = await worker.run("console.log('before'); while (true) {}", timeout_s=0.3)
    failed(done, "timeout")
    assert [e.message for e in worker.logs] == ["before"]


# ---- gc and lifecycle -------------------------------------------------------------------------


async def test_gc_while_idle(worker):
    worker.send(GcFrame())
    event = await worker.recv()
    assert isinstance(event, GcEvent)
    assert event.before.used > 0 and event.after.used > 0
    assert event.before.limit > event.before.total > 0  # V8's own limit, summed
    assert event.rss_before > 0 and event.rss_after > 0


async def test_gc_while_busy_answers_after_the_task(worker):
    task_id = worker.submit(
        "module.exports = () => new Promise((r) => setTimeout(() => r('slept'), 200));",
        kind="config",
        system_access=True,
    )
    assert isinstance(await worker.recv(), StartedEvent)
    worker.send(GcFrame())
    done = await worker.recv()
    assert isinstance(done, DoneEvent) and done.id == task_id and ok_value(done) == "slept"
    assert isinstance(await worker.recv(), GcEvent)


async def test_exit(worker):
    worker.send(ExitFrame())
    assert await asyncio.wait_for(worker.proc.wait(), 10) == 0


async def test_eof_exits_cleanly(worker):
    worker.proc.stdin.close()
    assert await asyncio.wait_for(worker.proc.wait(), 10) == 0


async def test_exit_while_running_still_sends_done(worker):
    task_id = worker.submit("while (true) {}", timeout_s=30)
    assert isinstance(await worker.recv(), StartedEvent)
    worker.send(ExitFrame())
    error = failed((await worker.until_done(task_id, timeout=5))[-1], "cancelled")
    assert "exiting" in error.message
    assert await asyncio.wait_for(worker.proc.wait(), 10) == 0


# ---- the typed protocol, end to end ------------------------------------------------------


async def test_run_and_cpu_time_are_measured_per_task(worker):
    done = await worker.run(
        "module.exports = () => new Promise((r) => setTimeout(() => r(1), 100));",
        kind="config",
        system_access=True,
    )
    assert ok_value(done) == 1
    # The timer cannot fire early, and waiting for it costs the worker no CPU.
    assert done.run_s >= 0.1 and 0 < done.cpu_s < done.run_s


async def test_a_malformed_run_frame_fails_only_its_own_task(worker):
    worker.send_raw({"op": "run", "id": "broken", "entry": 7})
    done = await worker.recv()
    assert isinstance(done, DoneEvent) and done.id == "broken"
    error = failed(done, "internal")
    assert "malformed run frame" in error.message
    worker.send_raw({"op": "reboot"})  # not a frame: skipped
    assert ok_value(await worker.run("module.exports = 5;")) == 5


async def test_a_run_frame_with_non_string_sources_fails_with_internal(worker):
    """The codec checks the types inside a frame's maps too: the frame is refused
    before the task starts, and the refusal names the field."""
    task_id = worker.submit({"main.js": 1})  # type: ignore[dict-item]
    events = await worker.until_done(task_id)
    assert len(events) == 1, events
    error = failed(events[-1], "internal")  # type: ignore[arg-type]
    assert "malformed run frame" in error.message and "$.modules" in error.message
    assert ok_value(await worker.run("module.exports = 2;")) == 2


async def test_a_second_task_of_a_tenant_reports_its_warm_isolate(worker):
    first = await worker.run("module.exports = 1;", reuse="acme")
    second = await worker.run("module.exports = 2;", reuse="acme")
    other = await worker.run("module.exports = 3;", reuse="globex")
    assert (first.warm, second.warm, other.warm) == (False, True, False)


async def test_a_retired_warm_isolate_still_reports_its_own_heap(worker):
    """A syntax error retires the isolate (its text may have declared globals); the
    heap is read before it is closed, however briefly the task ran."""
    for _ in range(3):
        assert ok_value(await worker.run("module.exports = 1;", reuse="acme")) == 1
    for source in ("module.exports = (", "}}"):  # the second takes the diagnosis path
        done = await worker.run(source, reuse="acme")
        failed(done, "syntax_error")
        assert done.warm and done.heap is not None and done.heap.used > 0, done
        ok_value(await worker.run("module.exports = 1;", reuse="acme"))


async def test_the_hermetic_clock_and_seed_reach_the_prelude_only_when_set():
    from zako_server.worker.driver import TaskDriver
    from zako_server.worker.task import RunningTask

    def frame(**context: Any) -> RunFrame:
        return RunFrame(
            "t", "main.js", {"main.js": ""}, "", TaskContext("build", "t", {}, False, **context),
            1.0, MiB, 1024, 1024, None, 1,
        )  # fmt: skip

    driver = TaskDriver(lambda event: None, "test")
    plain = driver._configuration(RunningTask.parse(frame()))
    assert "epochMs" not in plain and "seed" not in plain
    pinned = driver._configuration(RunningTask.parse(frame(epoch_ms=86_400_000, seed="s1")))
    assert (pinned["epochMs"], pinned["seed"]) == (86_400_000, "s1")
    assert {k: v for k, v in pinned.items() if k not in {"epochMs", "seed"}} == plain
