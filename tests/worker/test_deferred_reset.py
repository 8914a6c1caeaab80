"""A warm isolate's reset, deferred into the next task's eval (isolates.py), through a
real worker's pipes: nothing the previous task left behind reaches the next task's
report, a refused reset re-runs the task untouched in a fresh isolate, and microtasks a
task leaves running stop once the worker idles, or, when the task takes a heap reading
of its own, before it is read (isolates.task_heap)."""

from __future__ import annotations

import asyncio

import psutil

from tests.worker.test_process import ok_value
from tests.worker.test_process import worker as worker  # the fixture

# Everything here runs after the task's eval returned its outcome: microtasks that log,
# schedule a timer, set a global, read the task id and keep a module instance alive.
LEAVER = """
module.exports = (n, ctx) => {
  Promise.resolve().then(() => {
    console.log('late');
    setTimeout(() => console.log('timer'), 0);
    globalThis.leak = n;
    globalThis.kept = module;
    return ctx.taskId;
  });
  return n;
};
"""
PROBE = "module.exports = () => [typeof leak, typeof kept, typeof globalThis.leak]"


async def test_what_a_task_leaves_running_never_reaches_the_next_task(worker):
    first = await worker.run(LEAVER, input="1", reuse="t")
    assert ok_value(first) == 1 and worker.logs == []  # its late line came after its report
    second = await worker.run(PROBE, reuse="t")
    assert second.warm
    assert ok_value(second) == ["undefined", "undefined", "undefined"]
    assert worker.logs == [] and second.logs_dropped == 0
    assert not second.uncacheable  # the late taskId read was the previous task's


async def test_a_task_that_logs_after_returning_leaves_the_next_one_its_own_logs(worker):
    leaver = "module.exports = () => { queueMicrotask(() => console.log('late')); return 1 }"
    await worker.run(leaver, reuse="t")
    done = await worker.run("console.log('mine'); module.exports = 2", reuse="t")
    assert done.warm and ok_value(done) == 2
    assert [log.message for log in worker.logs] == ["mine"]


async def test_a_global_set_by_a_task_is_gone_in_the_next(worker):
    await worker.run("globalThis.x = 1; y = 2; module.exports = 0", reuse="t")
    done = await worker.run("module.exports = [typeof x, typeof y]", reuse="t")
    assert done.warm and ok_value(done) == ["undefined", "undefined"]


async def test_a_refused_reset_runs_the_task_untouched_in_a_fresh_isolate(worker):
    stuck = "Object.defineProperty(globalThis, 'stuck', { value: 1 }); module.exports = 1"
    assert ok_value(await worker.run(stuck, reuse="t"))
    done = await worker.run(
        "console.log('once'); module.exports = typeof stuck", reuse="t", timeout_s=2.0
    )
    assert not done.warm and ok_value(done) == "undefined"
    assert [log.message for log in worker.logs] == ["once"]  # it ran once, in the fresh one
    again = await worker.run("module.exports = typeof stuck", reuse="t")
    assert again.warm and ok_value(again) == "undefined"


async def test_microtasks_a_task_leaves_running_stop_once_the_worker_idles(worker):
    """A chain of microtasks that never ends, left by a task on a warm isolate: once the
    worker idles (SETTLE_AFTER_S), it resets the isolate in an eval of its own, which the
    chain keeps from answering, so the isolate is closed within RESET_TIMEOUT_S. Before,
    the chain ran on until the idle collection (IDLE_COLLECT_S), or for as long as other
    tenants' tasks kept the worker busy."""
    assert ok_value(await worker.run("module.exports = 0", reuse="t")) == 0
    chain = "(function f() { Promise.resolve().then(f) })(); module.exports = 1"
    assert ok_value(await worker.run(chain, reuse="t")) == 1  # its heap reading is cached
    await asyncio.sleep(0.6)  # SETTLE_AFTER_S + RESET_TIMEOUT_S, with room
    process = psutil.Process(worker.proc.pid)
    before = sum(process.cpu_times()[:2])
    await asyncio.sleep(0.3)
    assert sum(process.cpu_times()[:2]) - before < 0.1  # nothing runs any more
    after = await worker.run("module.exports = 2", reuse="t")
    assert ok_value(after) == 2 and not after.warm  # the chain's isolate was closed


async def test_a_first_task_that_leaves_microtasks_running_still_gets_its_done(worker):
    """An isolate's first task takes a heap reading of its own, a blocking call that
    would wait behind a chain of microtasks the task left running, forever: the worker
    hung until its parent's heartbeat killed it. A probe eval goes first now, and an
    isolate that does not answer it is closed instead of read."""
    chain = "(function f() { Promise.resolve().then(f) })(); module.exports = 1"
    done = await asyncio.wait_for(worker.run(chain, reuse="t"), 10)
    assert ok_value(done) == 1
    after = await asyncio.wait_for(worker.run("module.exports = 2", reuse="t"), 10)
    assert ok_value(after) == 2 and not after.warm  # that isolate was closed
