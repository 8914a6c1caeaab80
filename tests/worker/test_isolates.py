"""The worker's isolate keeping (isolates.py) with real V8 instances, in this process.

End-to-end behaviour through a server is in test_warm_isolates.py; these pin the rules:
which isolate a task gets, when one is kept, and that the prelude's reset is the gate.
"""

from __future__ import annotations

import asyncio
import json
import math

import pytest

from zako_server.protocol import FailureReason, HeapFigures
from zako_server.worker import runtime
from zako_server.worker.isolates import (
    HEAP_FRESH_S,
    HEAP_MAX_AGE,
    HEAP_MAX_RUN_S,
    Isolates,
    heap_reading,
    keep,
    retiring,
)
from zako_server.worker.runtime import Instance

KEY = ("tenant-a", "build", True)
OTHER = ("tenant-b", "build", True)
CONFIG = {
    "kind": "build",
    "hermetic": True,
    "taskId": "t",
    "labels": {},
    "version": "test",
    "maxLogBytes": 10_000,
    "maxResultBytes": 10_000,
    "reuse": True,
}


async def run(instance: Instance, source: str, reuse: bool = True) -> dict:
    """One task the way the worker runs a synchronous one: a single eval, which opens with
    the previous task's reset in a warm isolate (as driver._execute does). A refused reset
    comes back as {"reset": verdict}."""
    reset_first, instance.needs_reset = instance.needs_reset, False
    text = await instance.eval(
        runtime.task_script(
            instance.token,
            {**CONFIG, "reuse": reuse},
            [("main.js", source)],
            "main.js",
            "",
            reset_first=reset_first,
        )
    )
    report = json.loads(text)
    return {"reset": report["reset"]} if "reset" in report else report["outcome"]


@pytest.fixture
async def isolates():
    pool = Isolates()
    pool.prepare()
    yield pool
    pool.close()


def test_keep_only_after_outcomes_that_leave_nothing_running():
    instance = Instance()
    try:
        assert keep(instance, None, 1, 100, max_tasks=5)
        assert keep(instance, FailureReason.JS_ERROR, 1, 100, max_tasks=5)
        for reason in (
            FailureReason.TIMEOUT,
            FailureReason.CANCELLED,
            FailureReason.OUT_OF_MEMORY,
            FailureReason.INTERNAL,
            FailureReason.SYNTAX_ERROR,
        ):
            assert not keep(instance, reason, 1, 100, max_tasks=5), reason
        assert not keep(instance, None, 51, 100, max_tasks=5)  # over half the heap limit
        instance.uses = 5
        assert not keep(instance, None, 1, 100, max_tasks=5)
        instance.uses = 0
        instance.tainted = True  # an eval was abandoned: task code may still run
        assert not keep(instance, None, 1, 100, max_tasks=5)
    finally:
        instance.close()


async def test_the_same_key_gets_the_warm_isolate_and_another_key_a_fresh_one(isolates):
    first, warm = isolates.take(KEY)
    assert not warm and isolates.spare is None
    assert (await run(first, "module.exports = 1"))["ok"]
    assert await isolates.give_back(first, KEY, None, HeapFigures(used=1, limit=10**9), 10)
    isolates.prepare()
    again, warm = isolates.take(KEY)
    assert again is first and warm
    assert await isolates.give_back(again, KEY, None, HeapFigures(), 10)
    other, warm = isolates.take(OTHER)
    assert other is not first and not warm
    fresh, warm = isolates.take(None)
    assert fresh is not first and not warm
    fresh.close()
    other.close()


async def test_an_isolate_over_half_its_limit_in_garbage_is_collected_and_kept(isolates):
    """Only live data retires an isolate for its heap: garbage is collected first."""
    instance, _ = isolates.take(KEY)
    outcome = await run(
        instance,
        "let keep = 0; for (let i = 0; i < 300; i++) keep += new Array(20000).fill(i).length;"
        "module.exports = keep",
    )
    assert outcome["ok"]
    used = instance.heap()["used"]
    limit = 2 * used - 1  # just over half: retired, unless most of it is garbage
    assert await isolates.give_back(instance, KEY, None, HeapFigures(used, 0, limit), 10)
    assert isolates.warm is instance and instance.last_heap["used"] <= limit // 2
    # Live data over half the limit still retires it, collected or not.
    instance, warm = isolates.take(KEY)
    assert warm
    live = instance.heap()["used"]
    assert not await isolates.give_back(instance, KEY, None, HeapFigures(live, 0, live), 10)
    assert isolates.warm is None


async def test_a_fresh_task_never_leaves_its_isolate_behind(isolates):
    instance, _ = isolates.take(None)
    assert (await run(instance, "module.exports = 1", reuse=False))["ok"]
    assert not await isolates.give_back(instance, None, None, HeapFigures(), 10)
    assert isolates.warm is None


async def test_reset_restores_globals_and_refuses_what_it_cannot_undo(isolates):
    instance, _ = isolates.take(KEY)
    outcome = await run(
        instance,
        "globalThis.a = 1; b = 2; delete globalThis.Math;"
        "globalThis.JSON = null; module.exports = 1",
    )
    assert outcome["ok"]
    assert await isolates.give_back(instance, KEY, None, HeapFigures(), 10)
    instance, warm = isolates.take(KEY)
    assert warm
    outcome = await run(
        instance, "module.exports = [typeof a, typeof b, typeof Math.max, JSON.stringify([1])]"
    )
    assert json.loads(outcome["value"]) == ["undefined", "undefined", "function", "[1]"]
    assert await isolates.give_back(instance, KEY, None, HeapFigures(), 10)
    instance, warm = isolates.take(KEY)
    assert warm
    # A global that cannot be deleted again: the next task's eval refuses before running
    # anything of it (the worker then closes the isolate and runs the task fresh).
    assert (
        await run(
            instance, "Object.defineProperty(globalThis, 'stuck', {value: 1});module.exports = 1"
        )
    )["ok"]
    assert await isolates.give_back(instance, KEY, None, HeapFigures(), 10)
    instance, warm = isolates.take(KEY)
    assert warm and instance.needs_reset
    refused = await run(instance, "globalThis.ran = 1; module.exports = 2")
    assert refused == {"reset": "a global the task added cannot be removed"}
    assert await instance.eval("typeof ran") == "undefined"  # nothing of that task ran
    instance.close()


async def test_an_idle_warm_isolate_that_refuses_its_reset_is_closed_when_collected(isolates):
    instance, _ = isolates.take(KEY)
    source = "Object.defineProperty(globalThis, 'stuck', {value: 1}); module.exports = 1"
    assert (await run(instance, source))["ok"]
    assert await isolates.give_back(instance, KEY, None, HeapFigures(), 10)
    assert isolates.warm is instance and instance not in isolates.live()
    await isolates.collect()
    assert isolates.warm is None and isolates.warm_key is None


async def test_an_idle_isolate_still_running_microtasks_is_closed_when_collected(isolates):
    """A collection resets the warm isolate first and waits only briefly: a chain of
    microtasks the task left running costs the isolate, never the worker (a heap reading
    or a GC, both blocking, would wait for the chain forever)."""
    instance, _ = isolates.take(KEY)
    outcome = await run(
        instance, "(function f() { Promise.resolve().then(f) })(); module.exports = 1"
    )
    assert outcome["ok"]
    assert await isolates.give_back(instance, KEY, None, HeapFigures(), 10)
    assert isolates.warm is instance and instance.needs_reset
    await asyncio.wait_for(isolates.collect(), 5)
    assert isolates.warm is None
    instance, warm = isolates.take(KEY)
    assert not warm
    assert (await run(instance, "module.exports = 2"))["ok"]
    instance.close()


async def test_a_warm_isolate_is_settled_before_another_key_runs_or_the_worker_idles(isolates):
    """The reset is deferred only into the next task of the same key: before another
    key's task (or idling), `settle` resets it in an eval of its own, and a chain of
    microtasks the last task left running is stopped within RESET_TIMEOUT_S by closing
    the isolate, so it never runs beside another tenant's task."""
    other = OTHER
    instance, _ = isolates.take(KEY)
    assert (await run(instance, "globalThis.left = 1; module.exports = 1"))["ok"]
    assert await isolates.give_back(instance, KEY, None, HeapFigures(), 10)
    assert not isolates.unsettled(KEY)  # its own next task resets it first
    await isolates.settle(KEY)
    assert instance.needs_reset and await instance.eval("typeof left") == "number"
    assert isolates.unsettled(other) and isolates.unsettled(None)
    await isolates.settle(other)  # a clean reset: kept warm, its state dropped
    assert isolates.warm is instance and not instance.needs_reset
    assert await instance.eval("typeof left") == "undefined"
    assert (
        await run(instance, "(function f() { Promise.resolve().then(f) })(); module.exports = 1")
    )["ok"]
    assert await isolates.give_back(instance, KEY, None, HeapFigures(), 10)
    await asyncio.wait_for(isolates.settle(other), 5)  # the chain: closed, not waited on
    assert isolates.warm is None and not isolates.unsettled(None)


async def test_built_ins_are_frozen_once_hardened_but_inherited_names_stay_assignable(isolates):
    instance, _ = isolates.take(KEY)
    outcome = await run(instance, "'use strict'; Array.prototype.x = 1; module.exports = 1")
    assert not outcome["ok"] and outcome["error"]["name"] == "TypeError"
    instance.close()
    instance, _ = isolates.take(KEY)
    outcome = await run(
        instance,
        "'use strict'; class E extends Error { constructor() {"
        " super('m'); this.name = 'E' } }; const o = {};"
        " o.toString = () => 'x'; module.exports = [new E().name,"
        " String(o), Object.isFrozen(Object.prototype)]",
    )
    assert json.loads(outcome["value"]) == ["E", "x", True]
    instance.close()


async def test_a_fresh_isolate_is_not_hardened(isolates):
    instance, _ = isolates.take(None)
    outcome = await run(
        instance, "'use strict'; Array.prototype.x = 7; module.exports = [].x", reuse=False
    )
    assert json.loads(outcome["value"]) == 7
    instance.close()


async def test_heap_is_read_when_it_can_have_moved_and_reused_when_it_cannot(isolates):
    instance, _ = isolates.take(KEY)
    first = heap_reading(instance, 0.0)  # never read before: read now
    assert first is not None and first.used > 0
    instance.uses = 1
    first.used = -1  # the caller's copy; the isolate's reading must not change
    again = heap_reading(instance, 0.0001)
    assert again is not None and again.used > 0 and instance.heap_age == 1
    heap_reading(instance, 0.01)  # ran long enough: a new reading
    assert instance.heap_age == 0
    for _ in range(HEAP_MAX_AGE):
        heap_reading(instance, 0.0001)
    assert instance.heap_age == HEAP_MAX_AGE
    heap_reading(instance, 0.0001)
    assert instance.heap_age == 0
    heap_reading(instance, 0.0001)
    assert instance.heap_age == 1
    heap_reading(instance, 0.0001, retiring=True)  # closing it: its own reading, however brief
    assert instance.heap_age == 0
    brief = 0.0015  # CPU seconds of a brief task, below HEAP_FRESH_S
    count = math.ceil(HEAP_MAX_RUN_S / brief) - 1  # just short of HEAP_MAX_RUN_S in all
    assert brief < HEAP_FRESH_S and count < HEAP_MAX_AGE
    for _ in range(count):  # the reading stands
        heap_reading(instance, brief)
    assert instance.heap_age == count
    heap_reading(instance, brief)  # past HEAP_MAX_RUN_S since the reading: a new one
    assert instance.heap_age == 0
    instance.close()


async def test_an_isolate_about_to_close_is_read_but_a_busy_one_never(isolates):
    instance, _ = isolates.take(KEY)
    assert (await run(instance, "module.exports = 1"))["ok"]
    instance.uses = 1
    instance.last_heap = {"used": 7, "total": 7, "limit": 7}  # a reading from an earlier task
    assert heap_reading(instance, 0.0001) == HeapFigures(7, 7, 7)
    fresh = heap_reading(instance, 0.0001, retiring=True)
    assert fresh is not None and fresh.used > 7
    instance.tainted = True  # task code may still run: no blocking call, even to retire it
    assert heap_reading(instance, 0.0001, retiring=True) is None
    instance.close()


def test_an_isolate_retires_for_its_outcome_its_flags_or_its_age():
    instance = Instance()
    try:
        assert not retiring(instance, None, max_tasks=5, uses=4)
        assert retiring(instance, None, max_tasks=5, uses=5)
        assert retiring(instance, FailureReason.SYNTAX_ERROR, max_tasks=5, uses=1)
        instance.retired = True
        assert retiring(instance, None, max_tasks=5, uses=1)
    finally:
        instance.close()


# Objects made by syntax and by built-ins, twice over: whatever both walks reach is shared
# by every task in the isolate (an intrinsic), and must be frozen; the rest is per task.
AUDIT = r"""
module.exports = () => {
  const make = () => {
    const roots = [
      async function () {}, function* () {}, async function* () {}, (function* () {})(),
      (async function* () {})(), [].values(), [].entries(), ''[Symbol.iterator](),
      new Map().entries(), new Set().values(), /a/g[Symbol.matchAll]('a'), new Int8Array(1),
      new Uint8Array(1).values(), new ArrayBuffer(1), new DataView(new ArrayBuffer(1)),
      Promise.resolve(), new WeakMap(), new WeakSet(), Object(1n), Object(Symbol()),
      new Error('x'), new TypeError('x'), new AggregateError([]),
      (function () { return arguments; })(), (function () { 'use strict'; return arguments; })(),
      class {}, () => {}, new Proxy({}, {}), /x/, new String('s'), new Number(1), {}, [],
    ];
    const optional = [() => [].values().map((x) => x), () => Iterator.from({ next() {} }),
      () => new Date(0), () => new Intl.Segmenter().segment('a'),
      () => new Intl.Segmenter().segment('a')[Symbol.iterator]()];
    for (const f of optional) { try { roots.push(f()); } catch (e) { /* absent or denied */ } }
    return roots;
  };
  const walk = (roots) => {
    const seen = new Set();
    const queue = roots.slice();
    for (let i = 0; i < queue.length && i < 200000; i++) {
      const o = queue[i];
      if (o === null || (typeof o !== 'object' && typeof o !== 'function') || seen.has(o)) continue;
      seen.add(o);
      let keys;
      try { keys = Reflect.ownKeys(o); } catch (e) { continue; }
      const p = Object.getPrototypeOf(o);
      if (p !== null) queue.push(p);
      for (const k of keys) {
        const d = Object.getOwnPropertyDescriptor(o, k);
        if (d === undefined) continue;
        if ('value' in d) queue.push(d.value); else queue.push(d.get, d.set);
      }
    }
    return seen;
  };
  const first = walk(make());
  const open = [];
  let shared = 0;
  for (const o of walk(make())) {
    if (!first.has(o) || o === globalThis) continue;
    shared++;
    let frozen = true;
    try { frozen = Object.isFrozen(o); } catch (e) { /* a denied stub: immutable */ }
    if (!frozen) {
      open.push(Object.prototype.toString.call(o) + ' ' + Reflect.ownKeys(o).map(String));
    }
  }
  return { shared, open };
};
"""


@pytest.mark.parametrize("hermetic", [True, False], ids=["hermetic", "system-access"])
async def test_every_intrinsic_a_task_can_reach_is_frozen_once_hardened(isolates, hermetic):
    instance, _ = isolates.take(KEY)
    text = await instance.eval(
        runtime.task_script(
            instance.token,
            {**CONFIG, "hermetic": hermetic, "kind": "build" if hermetic else "config"},
            [("main.js", AUDIT)],
            "main.js",
            "",
        )
    )
    outcome = json.loads(text)["outcome"]
    assert outcome["ok"], outcome
    audit = json.loads(outcome["value"])
    assert audit["shared"] > 300  # the walk really reached the intrinsics
    assert audit["open"] == []
    instance.close()


def test_a_heap_answer_that_is_not_json_is_no_reading_not_a_failure():
    """mini-racer answers heap_stats with empty text once an isolate hit its hard limit."""
    instance = Instance()
    try:
        instance.mr.heap_stats = lambda: json.loads("")  # type: ignore[method-assign]
        assert heap_reading(instance, 1.0, retiring=True) is None
    finally:
        instance.close()


async def test_the_reset_is_deferred_into_the_next_task_s_eval(isolates):
    """give_back costs no eval: the next task's own eval opens with the reset."""
    instance, _ = isolates.take(KEY)
    assert (await run(instance, "globalThis.leak = 1; module.exports = 1"))["ok"]
    assert await isolates.give_back(instance, KEY, None, HeapFigures(), 10)
    assert instance.needs_reset and await instance.eval("typeof leak") == "number"
    again, warm = isolates.take(KEY)
    assert again is instance and warm
    assert json.loads((await run(again, "module.exports = typeof leak"))["value"]) == "undefined"
    assert not again.needs_reset
