"""Nothing the runtime hands a task survives into the next task of a warm isolate.

The intrinsics audit (test_isolates.py) proves what syntax reaches is frozen. This one
starts from everything the prelude itself hands to user code — every global including the
ones made on first use (Buffer, process, URL, crypto ...), every built-in module, a
CapabilityError, console, require, module, the context objects, objects the web and Node
classes make — and proves that whatever is not frozen is the task's own: task 1 marks
every object it can reach and mark, task 2 (same isolate) walks the same roots and must
find no mark and nothing half-frozen (non-extensible yet writable, which a mark cannot
test). This is how issue 12's CapabilityError leak would have been found.
"""

from __future__ import annotations

import json

import pytest

from zako_server.worker import runtime
from zako_server.worker.isolates import Isolates

KEY = ("tenant-a", "build", True)
CONFIG = {
    "kind": "build",
    "hermetic": True,
    "taskId": "t",
    "labels": {},
    "version": "test",
    "maxLogBytes": 10_000,
    "maxResultBytes": 1_000_000,
    "reuse": True,
}
BUILTINS = [
    "assert", "assert/strict", "buffer", "events", "path", "path/posix", "querystring",
    "string_decoder", "url", "util", "util/types", "timers", "process", "fs", "fs/promises",
    "child_process", "net", "http", "https", "os", "stream", "crypto", "zlib", "zako:core",
    "zako:context",
]  # fmt: skip

AUDIT = r"""
// The module wrappers a warm isolate keeps (modules.js) are shared by the tasks to come:
// reach them as sloppy code can, and as a stack frame hands them out.
const WRAPPER = arguments.callee;
const LIB = require('./lib.js');
let framed = [];
try {
  const before = Error.prepareStackTrace;
  Error.prepareStackTrace = (e, sites) => sites.map((s) => s.getFunction());
  framed = LIB.frames();
  Error.prepareStackTrace = before;
} catch (e) { /* refused: nothing to walk */ }
module.exports = (phase) => {
  const MARK = Symbol.for('zako-audit-mark');
  const roots = [console, require, module, exports, WRAPPER, LIB.wrapper, ...framed];
  if (WRAPPER === undefined || LIB.wrapper === undefined) throw new Error('no wrapper reached');
  for (const name of Reflect.ownKeys(globalThis)) {
    try { roots.push(globalThis[name]); } catch (e) { /* a getter that refuses */ }
  }
  for (const name of BUILTINS) {
    roots.push(require(name));
    if (!name.startsWith('zako:')) roots.push(require('node:' + name));
  }
  try { require('fs').readFileSync('x'); } catch (e) { roots.push(e); }
  const made = [
    () => new TextEncoder(), () => new TextDecoder(), () => new URL('https://a.example/?q=1'),
    () => new URLSearchParams('a=1'), () => Buffer.from('x'), () => new EventTarget(),
    () => new Event('x'), () => new AbortController(), () => AbortSignal.abort(),
    () => new (require('events'))(), () => new DOMException('x'),
    () => new (require('assert').AssertionError)({}), () => structuredClone({ a: 1 }),
    () => new (require('string_decoder').StringDecoder)('utf8'),
    () => require('url').parse('http://a/b'),
    () => crypto.subtle.digest('SHA-256', new Uint8Array(1)), () => new Date(), () => performance,
  ];
  for (const f of made) roots.push(f());
  const seen = new Set();
  const queue = roots.slice();
  const found = [];
  let marked = 0;
  for (let i = 0; i < queue.length && i < 300000; i++) {
    const o = queue[i];
    if (o === null || (typeof o !== 'object' && typeof o !== 'function')) continue;
    if (seen.has(o) || o === globalThis) continue;
    seen.add(o);
    let ks;
    try { ks = Reflect.ownKeys(o); } catch (e) { continue; }
    const p = Object.getPrototypeOf(o);
    if (p !== null) queue.push(p);
    for (const k of ks) {
      const d = Object.getOwnPropertyDescriptor(o, k);
      if (d === undefined) continue;
      if ('value' in d) queue.push(d.value); else queue.push(d.get, d.set);
    }
    if (Object.isFrozen(o)) continue;
    const what = Object.prototype.toString.call(o) + ' ' + ks.slice(0, 6).map(String);
    if (phase === 'check') {
      if (Object.prototype.hasOwnProperty.call(o, MARK)) found.push('marked by task 1: ' + what);
      else if (!Object.isExtensible(o)) found.push('not extensible but not frozen: ' + what);
    } else {
      try { Object.defineProperty(o, MARK, { value: 1 }); marked++; } catch (e) { /* refused */ }
    }
  }
  return { walked: seen.size, marked, found };
};
""".replace("BUILTINS", json.dumps(BUILTINS))


LIB = r"""
const self = arguments.callee;
module.exports = {
  wrapper: self,
  frames: () => new Error('x').stack,
};
"""


async def run(instance, source: str, phase: str, hermetic: bool) -> dict:
    """One task whose two modules the isolate keeps by digest (as the worker's store
    hands them over), so the second task runs the wrappers the first one compiled."""
    config = {**CONFIG, "hermetic": hermetic, "kind": "build" if hermetic else "config"}
    files = [("main.js", "digest-main"), ("lib.js", "digest-lib")]
    give = [("digest-main", source, True), ("digest-lib", LIB, True)] if phase == "mark" else []
    text = await instance.run(
        runtime.task_arguments(
            instance.token, config, files, give, [], "main.js", json.dumps(phase)
        )
    )
    report = json.loads(text)
    outcome = report["outcome"]
    assert outcome is not None and outcome["ok"], outcome
    # The check task loaded both modules from the wrappers the mark task compiled.
    assert report["compiled"] == ([0, 2] if phase == "mark" else [2, 0]), report["compiled"]
    return json.loads(outcome["value"])


@pytest.mark.parametrize("hermetic", [True, False], ids=["hermetic", "system-access"])
async def test_nothing_the_runtime_hands_a_task_carries_over_to_the_next(hermetic):
    pool = Isolates()
    pool.prepare()
    try:
        instance, _ = pool.take(KEY)
        first = await run(instance, AUDIT, "mark", hermetic)
        assert first["walked"] > 1500 and first["marked"] > 100, first  # it really walked
        assert await instance.eval(runtime.reset_script(instance.token)) == ""
        second = await run(instance, AUDIT, "check", hermetic)
        assert second["walked"] > 1500
        assert second["found"] == []
    finally:
        pool.close()
