"""A warm isolate's reset, deferred into the next task's eval (isolates.py), through a
real worker's pipes: nothing the previous task left behind reaches the next task's
report, and a refused reset re-runs the task untouched in a fresh isolate. (A collection
of an idle warm isolate still running microtasks is test_isolates.py's: through the pipes
the done event's heap reading can itself wait for such a chain.)"""

from __future__ import annotations

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
