"""The workers' code cache through a real worker's pipes: texts by digest (the parent's
mirror, server/code_mirror.py, builds the frames exactly as a WorkerHandle does), and
the wrappers a warm isolate keeps — fresh module instances every task, nothing a task
can mark, and the figures each done event reports."""

from __future__ import annotations

from typing import Any

import msgspec

from tests.worker.test_process import MiB, WorkerClient, failed, ok_value
from tests.worker.test_process import worker as worker  # the fixture
from zako_server.protocol import DoneEvent, FailureReason, RunFrame, StartedEvent, TaskContext
from zako_server.server.code_mirror import CodeCacheCounters, DigestMemo, SourceMirror
from zako_server.worker.sources import digest_of

LIB = "let calls = 0; module.exports = () => ++calls; // " + "x" * 200
MAIN = "const count = require('./lib.js'); module.exports = (n) => count() + n;"


def frame(task_id: str, modules: dict[str, str], **fields: Any) -> RunFrame:
    reuse = fields.pop("reuse", None)
    heap = fields.pop("max_heap_bytes", 64 * MiB)
    entry = fields.pop("entry", "main.js")
    context = TaskContext("build", task_id, {}, False)
    return RunFrame(
        task_id, entry, modules, fields.pop("input", "1"), context, 5.0, heap,
        65536, MiB, reuse, 500, **fields,
    )  # fmt: skip


class Parent:
    """A worker client that sends every run through a SourceMirror, as the pool does."""

    def __init__(self, client: WorkerClient, capacity: int = 1 << 20) -> None:
        self.client = client
        self.counters = CodeCacheCounters()
        self.mirror = SourceMirror(capacity, self.counters, DigestMemo())
        self.sent: list[RunFrame] = []
        self.count = 0

    async def run(self, modules: dict[str, str], **fields: Any) -> DoneEvent:
        self.count += 1
        wire = self.mirror.wire(frame(f"c{self.count}", modules, **fields))
        self.sent.append(wire)
        return await self.send(wire)

    async def send(self, wire: RunFrame) -> DoneEvent:
        self.client.send(wire)
        events = await self.client.until_done(wire.id)
        assert events[0] == StartedEvent(wire.id)
        done = events[-1]
        assert isinstance(done, DoneEvent)
        self.mirror.finished(done)
        return done


async def test_a_text_crosses_the_pipe_once_then_travels_by_digest(worker):
    parent = Parent(worker)
    modules = {"main.js": MAIN, "lib.js": LIB}
    assert ok_value(await parent.run(modules, input="1")) == 2
    assert ok_value(await parent.run(modules, input="2")) == 3  # a fresh isolate: fresh lib
    first, second = parent.sent
    assert set(first.sources) == {digest_of(MAIN), digest_of(LIB)} and first.modules == {}
    assert second.sources == {} and second.modules == {} and second.forget == []
    assert second.digests == {"main.js": digest_of(MAIN), "lib.js": digest_of(LIB)}
    assert parent.counters.source_misses == 2 and parent.counters.source_hits == 2
    assert parent.counters.source_bytes_sent == len(MAIN) + len(LIB)


async def test_what_the_parent_evicts_the_worker_forgets(worker):
    parent = Parent(worker, capacity=len(MAIN) + len(LIB) + 10)
    other = "module.exports = (n) => n * 10; // " + "y" * 200
    assert ok_value(await parent.run({"main.js": MAIN, "lib.js": LIB})) == 2
    assert ok_value(await parent.run({"main.js": other}, input="3")) == 30
    evicted = parent.sent[1].forget
    assert evicted and set(evicted) <= {digest_of(MAIN), digest_of(LIB)}
    # A frame naming an evicted text without sending it: the worker no longer has it.
    stale = msgspec.structs.replace(parent.sent[0], id="stale", sources={}, forget=[])
    done = await parent.send(stale)
    assert failed(done, FailureReason.INTERNAL).name == "InternalError"
    assert set(done.missing) == set(evicted)
    # Through the mirror, the evicted texts simply travel again.
    assert ok_value(await parent.run({"main.js": MAIN, "lib.js": LIB})) == 2
    assert set(parent.sent[-1].sources) == set(evicted)


async def test_a_file_bigger_than_the_store_goes_inline_every_time(worker):
    parent = Parent(worker, capacity=100)
    modules = {"main.js": MAIN, "lib.js": LIB}  # LIB alone is over 200 bytes
    assert ok_value(await parent.run(modules)) == 2
    assert ok_value(await parent.run(modules)) == 2
    assert all(wire.modules == {"lib.js": LIB} for wire in parent.sent)
    assert parent.mirror.bytes <= 100


async def test_a_warm_isolate_reuses_its_wrappers_with_fresh_module_state(worker):
    parent = Parent(worker)
    modules = {"main.js": MAIN, "lib.js": LIB}
    first = await parent.run(modules, input="10", reuse="tenant")
    second = await parent.run(modules, input="10", reuse="tenant")
    assert ok_value(first) == ok_value(second) == 11  # `calls` starts at 0 in each task
    assert (first.compiled_hits, first.compiled_misses) == (0, 2)
    assert second.warm and (second.compiled_hits, second.compiled_misses) == (2, 0)
    assert parent.counters.compiled_hits == 2 and parent.counters.compiled_misses == 2
    # Without reuse nothing is kept: every task compiles.
    third = await parent.run(modules, input="10")
    assert (third.compiled_hits, third.compiled_misses) == (0, 2)


async def test_a_task_cannot_leave_marks_on_a_kept_wrapper(worker):
    parent = Parent(worker)
    marker = (
        "const self = arguments.callee; const seen = [self.mark, self.prototype.mark];\n"
        "try { self.mark = 1; } catch (e) {}\n"
        "try { self.prototype.mark = 2; } catch (e) {}\n"
        "try { Object.defineProperty(self, 'other', { value: 3 }); } catch (e) {}\n"
        "module.exports = () => [Object.isFrozen(self), Object.isFrozen(self.prototype),"
        " ...seen, self.other === undefined];"
    )
    first = await parent.run({"main.js": marker}, reuse="tenant")
    second = await parent.run({"main.js": marker}, reuse="tenant")
    assert second.compiled_hits == 1
    assert ok_value(first) == ok_value(second) == [True, True, None, None, True]


async def test_a_syntax_error_in_a_stored_module_is_located(worker):
    parent = Parent(worker)
    broken = "module.exports = 1;\nlet x = (;\n"
    main = "module.exports = () => require('./bad.js');"
    for _ in range(2):
        error = failed(
            await parent.run({"main.js": main, "bad.js": broken}, reuse="tenant"),
            FailureReason.SYNTAX_ERROR,
        )
        assert (error.module, error.line) == ("bad.js", 2), error
    assert parent.sent[1].sources == {}  # the second time, the text came from the store


async def test_prepared_code_travels_once_by_its_own_digest(worker):
    parent = Parent(worker)
    code = "module.exports = () => 'prepared'; // " + "z" * 100
    prepared = {"main.js": {"esm": False, "code": code}}
    for _ in range(2):
        done = await parent.run({"main.js": "ignored text"}, prepared=prepared, reuse="t")
        assert ok_value(done) == "prepared"
    first, second = parent.sent
    assert first.prepared["main.js"] == {"esm": False, "code_digest": digest_of(code)}
    assert digest_of(code) in first.sources and second.sources == {}
    assert done.compiled_hits == 1


async def test_a_large_transform_answer_travels_once_by_digest(worker):
    parent = Parent(worker)
    names = [f"name{i}" for i in range(300)]  # cjs-module-lexer's answer: over 1 KiB
    lib = "exports.name7 = 'seven';"
    prepared = {"lib.js": {"esm": False, "cjs": {"exports": names, "reexports": []}}}
    main = {"main.mjs": {"esm": True, "code": "const { name7 } = require('./lib.js');\n"
            "exports.default = () => name7;"}}  # fmt: skip
    for _ in range(2):
        done = await parent.run(
            {"main.mjs": "", "lib.js": lib},
            prepared={**prepared, **main},
            reuse="t",
            entry="main.mjs",
        )
        assert ok_value(done) == "seven"
    first, second = parent.sent
    assert set(first.prepared["lib.js"]) == {"entry_digest"}
    assert first.prepared["lib.js"]["entry_digest"] in first.sources
    assert second.sources == {} and second.prepared["lib.js"] == first.prepared["lib.js"]


async def test_reading_the_task_id_makes_the_outcome_uncacheable(worker):
    parent = Parent(worker)
    plain = await parent.run({"main.js": "module.exports = (n, ctx) => [ctx.kind, ctx.labels]"})
    assert ok_value(plain) == ["build", {}] and not plain.uncacheable
    spread = await parent.run({"main.js": "module.exports = (n, ctx) => ({ ...ctx }).kind"})
    assert spread.uncacheable  # copying the context reads taskId too
    reader = "module.exports = (n, ctx) => ctx.taskId.length > 0"
    for reuse in (None, "tenant", "tenant"):
        done = await parent.run({"main.js": reader}, reuse=reuse)
        assert ok_value(done) is True and done.uncacheable
    after = await parent.run({"main.js": "module.exports = 1"}, reuse="tenant")
    assert after.warm and not after.uncacheable  # the flag is per task
