"""Both clients against a real Zako server (the `zako_server` fixture: loopback, real V8)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_streams import Face

from zako_sdk import (
    CONTEXT_NAMES,
    AsyncClient,
    Client,
    InvalidTask,
    TaskCancelled,
    TaskFailed,
    TaskSpec,
    TaskTimeout,
)
from zako_sdk._cli_args import EXIT_OK, EXIT_TASK_FAILED
from zako_sdk.cli import main

HELLO = """
module.exports = (input, context) => {
  console.log("hello from", context.kind ?? "a task");
  return { greeting: "hello " + input.name };
};
"""

THROWS = """// line 1
function check(x) {
  if (x < 0) throw new RangeError("negative: " + x);
  return x;
}
module.exports = (n) => check(n);
"""

SPIN = "module.exports = () => { for (;;) {} };"


@pytest.fixture(params=["async", "sync"])
async def client(request: pytest.FixtureRequest, zako_server: Any) -> AsyncIterator[Face]:
    if request.param == "async":
        async with AsyncClient(zako_server.target) as inner:
            yield Face(inner)
    else:
        inner_sync = Client(zako_server.target)
        yield Face(inner_sync)
        await asyncio.to_thread(inner_sync.close)


async def test_hello_world(client):
    # cache="skip": both faces run this same task, and it is the run that is checked here,
    # not an answer from the server's action cache (see test_cas_uploads.py for those).
    result = await client.run(HELLO, input={"name": "zako"}, cache="skip")
    assert result.cached is False
    assert result.value == {"greeting": "hello zako"}
    assert result.logs[0].message.startswith("hello from")
    # A task that ran has a start and a measured (non-zero) run time, read off the wire.
    assert result.timings.started_at is not None and result.timings.finished_at is not None
    assert result.timings.run > 0 and result.timings.queued >= 0
    assert result.task_id and result.worker_id


async def test_run_unary_hello_world(client):
    result = await client.run_unary(HELLO, input={"name": "unary"})
    assert result.value == {"greeting": "hello unary"} and len(result.logs) == 1


async def test_modules_are_required_by_name(client):
    result = await client.run(
        'module.exports = (x) => require("lib/twice.js")(x)',
        input=4,
        modules={"lib/twice.js": "module.exports = (x) => 2 * x;"},
    )
    assert result.value == 8


async def test_task_failed_carries_the_js_error_with_its_stack_and_line(client):
    with pytest.raises(TaskFailed) as info:
        await client.run(THROWS, input=-2, entry_name="check.js")
    error = info.value
    assert error.reason == "JS_ERROR"
    assert (error.js_error.name, error.js_error.message) == ("RangeError", "negative: -2")
    assert (error.js_error.module, error.js_error.line) == ("check.js", 3)
    assert "check.js:3" in error.js_error.stack and "check.js:3" in str(error)


async def test_timeout_is_task_timeout(client):
    with pytest.raises(TaskTimeout) as info:
        await client.run(SPIN, timeout=0.3)
    assert info.value.reason == "TIMEOUT"


async def test_submit_then_cancel(client):
    handle = await client.submit(SPIN, timeout=60)
    await asyncio.sleep(0.3)  # let it start spinning on a worker
    await handle.cancel("no longer needed")
    with pytest.raises(TaskCancelled) as info:
        await handle.result()
    assert info.value.task_id == handle.task_id
    # The pool survives a cancelled spinner: the next task runs.
    assert (await client.run("module.exports = 7")).value == 7


async def test_bad_task_is_rejected_with_the_field(client):
    with pytest.raises(InvalidTask) as info:
        await client.run("module.exports = 1", context="build", system_access=True)
    assert info.value.field == "task.system_access"
    with pytest.raises(InvalidTask):
        await client.run_unary("module.exports = 1", context="build", system_access=True)


async def test_batch_of_200_in_input_order(client):
    specs = [TaskSpec("module.exports = (n) => n * n", input=n) for n in range(200)]
    results = await client.batch(specs)
    assert [r.value for r in results] == [n * n for n in range(200)]
    assert len({r.task_id for r in results}) == 200


async def test_batch_with_failures_in_place(client):
    specs = [TaskSpec(THROWS, input=n) for n in (1, -1, 2)]
    one, failed, two = await client.batch(specs, return_exceptions=True)
    assert (one.value, two.value) == (1, 2) and isinstance(failed, TaskFailed)


async def test_fresh_isolate_runs_and_says_so_in_the_timings(client):
    fresh = await client.run("module.exports = (x) => x + 1", input=1, fresh_isolate=True)
    assert fresh.value == 2 and fresh.timings.warm_isolate is False
    unary = await client.run_unary("module.exports = 3", fresh_isolate=True)
    assert unary.value == 3 and unary.timings.warm_isolate is False
    # By default the server reuses isolates: a tenant's next plain task runs warm (the
    # pool hands it the worker that holds the first one's isolate).
    default = await client.run("module.exports = 4", cache="skip")
    again = await client.run("module.exports = 5", cache="skip")
    assert default.value == 4 and again.value == 5 and again.timings.warm_isolate is True


async def test_stats_and_capabilities(client):
    capabilities = await client.capabilities()
    assert capabilities.versions.protocol == "zako.v1"
    assert capabilities.isolate_reuse is True  # the server's default, isolate_reuse=tenant
    assert capabilities.context_kinds == CONTEXT_NAMES
    assert capabilities.limits.max_timeout >= capabilities.limits.default_timeout > 0
    stats = await client.stats()
    assert (stats.pool.min_workers, stats.pool.max_workers) == (1, 2)  # test_settings
    assert stats.time is not None and stats.uptime > 0


async def test_capabilities_follow_the_server_settings(server_factory):
    server = server_factory(isolate_reuse="never")
    async with AsyncClient(server.target) as client:
        assert (await client.capabilities()).isolate_reuse is False
        assert (await client.run("module.exports = 1")).timings.warm_isolate is False
        assert (await client.run("module.exports = 2")).timings.warm_isolate is False


def test_cli_run_prints_json(zako_server, tmp_path: Path, capsys):
    path = tmp_path / "hello.js"
    path.write_text(HELLO)
    code = main(["run", str(path), "--target", zako_server.target, "--input", '{"name":"cli"}'])
    captured = capsys.readouterr()
    assert code == EXIT_OK, captured.err
    assert json.loads(captured.out) == {"greeting": "hello cli"}
    assert "hello from" in captured.err


def test_cli_run_failure_prints_the_stack(zako_server, tmp_path: Path, capsys):
    path = tmp_path / "check.js"
    path.write_text(THROWS)
    assert main(["run", str(path), "--target", zako_server.target, "--input", "-5"]) == (
        EXIT_TASK_FAILED
    )
    err = capsys.readouterr().err
    assert "RangeError: negative: -5" in err and "check.js:3" in err
