"""The workers' code cache from the server's side: the parent's mirror of each worker's
texts (pure logic), affinity by held texts, and the figures Stats reports for real runs."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import grpc
from google.protobuf.duration_pb2 import Duration

from tests.server.test_metrics import scrape
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc
from zako_server.protocol import DoneEvent, ReuseKey, RunFrame, TaskContext
from zako_server.server.affinity import HOLD_MIN_BYTES, choose
from zako_server.server.code_mirror import (
    CodeCacheCounters,
    DigestMemo,
    SourceMirror,
    units_of,
)
from zako_server.server.worker_handle import WorkerState
from zako_server.worker.sources import digest_of


def frame(modules: dict[str, str], prepared: dict | None = None) -> RunFrame:
    context = TaskContext("build", "t", {}, False)
    return RunFrame(
        "t", "main.js", modules, "", context, 1.0, 1, 1, 1, None, 0, prepared=prepared or {}
    )


def mirror(capacity: int) -> SourceMirror:
    return SourceMirror(capacity, CodeCacheCounters(), DigestMemo())


def test_texts_of_a_frame_still_held_by_the_worker_are_not_evicted():
    """Prefetch: the worker applies a queued frame's `forget` on arrival, before the
    task ahead of it ran, so that task's texts must survive it (they are pinned)."""
    m = mirror(300)
    a, b, c = ("a" * 100, "b" * 100, "c" * 100)
    m.wire(frame({"b.js": b}))
    ahead = m.wire(frame({"a.js": a}))  # queued or running: a is pinned from now
    wire = m.wire(frame({"c.js": c, "d.js": "d" * 150}), units_of(ahead))
    assert wire.forget == [digest_of(b)]  # b went; a, older than c, stayed
    assert m.holds(digest_of(a))
    # d fits only if a goes: it travels inline instead.
    assert set(wire.sources) == {digest_of(c)} and wire.modules == {"d.js": "d" * 150}
    unpinned = mirror(300)
    unpinned.wire(frame({"b.js": b}))
    unpinned.wire(frame({"a.js": a}))
    assert unpinned.wire(frame({"c.js": c, "d.js": "d" * 150})).forget == [
        digest_of(b),
        digest_of(a),
    ]


def test_least_recently_used_texts_are_evicted_never_the_tasks_own():
    m = mirror(300)
    a, b, c = ("a" * 100, "b" * 100, "c" * 100)
    m.wire(frame({"a.js": a, "b.js": b}))
    m.wire(frame({"a.js": a}))  # a is now the most recent
    wire = m.wire(frame({"c.js": c, "d.js": "d" * 150}))
    # b went first (least recent), then a; c and d, this task's own, stay.
    assert wire.forget == [digest_of(b), digest_of(a)]
    assert set(wire.sources) == {digest_of(c), digest_of("d" * 150)}
    assert m.bytes == 250 <= m.capacity


def test_what_does_not_fit_beside_the_tasks_own_files_goes_inline():
    m = mirror(250)
    big = {"x.js": "x" * 200, "y.js": "y" * 200}
    wire = m.wire(frame(big))
    assert wire.forget == [] and len(wire.sources) == 1 and len(wire.modules) == 1
    assert m.bytes == 200


def test_a_task_naming_the_same_text_twice_sends_it_once():
    m = mirror(1000)
    wire = m.wire(frame({"a.js": "same", "b/a.js": "same"}))
    assert wire.sources == {digest_of("same"): "same"} and wire.modules == {}
    assert m.counters.source_misses == 1 and m.counters.source_bytes_sent == 4


def test_digests_the_worker_lacked_are_forgotten():
    m = mirror(1000)
    m.wire(frame({"a.js": "aaa"}))
    m.finished(DoneEvent("t", 0, 0, None, 0, False, missing=[digest_of("aaa")]))
    assert not m.holds(digest_of("aaa")) and m.bytes == 0
    assert m.wire(frame({"a.js": "aaa"})).sources  # sent again


def test_prepared_code_is_digested_once_per_string_object():
    memo = DigestMemo()
    code = "module.exports = 1; //" + "p" * 50
    assert memo.digest(code) == digest_of(code)
    m = SourceMirror(1000, CodeCacheCounters(), memo)
    first = m.wire(frame({"main.js": "t"}, {"main.js": {"esm": False, "code": code}}))
    second = m.wire(frame({"main.js": "t"}, {"main.js": {"esm": False, "code": code}}))
    assert first.prepared["main.js"] == {"esm": False, "code_digest": digest_of(code)}
    assert digest_of(code) in first.sources and second.sources == {}


@dataclass
class Fake:
    warm_key: ReuseKey | None = None
    state: WorkerState = "idle"
    sources: SourceMirror | None = None


def test_an_idle_worker_holding_a_tasks_texts_is_preferred_to_a_cold_one():
    holder = mirror(1 << 20)
    library = {"lib.js": "l" * HOLD_MIN_BYTES}
    holder.wire(frame(library))
    digests = {"lib.js": digest_of(library["lib.js"])}
    workers = [Fake(), Fake(("other", "build", True), sources=holder)]
    assert choose(workers, ("acme", "build", True), digests) == 1
    assert choose(workers, None, digests) == 1
    # A warm isolate for the task's own key still comes first.
    warm = Fake(("acme", "build", True), sources=mirror(1 << 20))
    assert choose([*workers, warm], ("acme", "build", True), digests) == 2


def test_a_few_held_bytes_do_not_outweigh_a_cold_worker():
    small = mirror(1 << 20)
    small.wire(frame({"main.js": "module.exports = 1"}))
    workers = [Fake(("other", "build", True), sources=small), Fake()]
    assert (
        choose(workers, ("acme", "build", True), {"main.js": digest_of("module.exports = 1")}) == 1
    )


async def test_stats_count_texts_sent_once_and_wrappers_reused(server_factory):
    server = server_factory(min_workers=1, max_workers=1, metrics_listen="127.0.0.1:0")
    library = "let n = 0; module.exports = () => ++n; // " + "q" * 1000
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        before = (await stub.Stats(pb.StatsRequest())).code_cache
        values = []
        for i in range(3):  # distinct inputs: each one runs (no action-cache answer)
            task = pb.Task(
                source="const lib = require('./lib.js'); module.exports = (x) => lib() + x;",
                modules=[pb.Module(name="lib.js", source=library)],
                input_json=json.dumps(i),
                timeout=Duration(seconds=30),
            )
            reply = await stub.Run(pb.RunRequest(task=task), timeout=60)
            assert reply.WhichOneof("outcome") == "completed", reply
            values.append(json.loads(reply.completed.result.value_json))
        after = (await stub.Stats(pb.StatsRequest())).code_cache
    assert values == [1, 2, 3]  # fresh module state in every task
    assert after.source_misses - before.source_misses == 2  # the entry and lib.js, once
    assert after.source_hits - before.source_hits == 4
    assert after.source_bytes_sent - before.source_bytes_sent < 2 * len(library)
    assert after.compiled_hits - before.compiled_hits == 4  # tasks 2 and 3, warm
    assert after.compiled_misses - before.compiled_misses == 2
    # Prometheus reads the same counters.
    samples = await asyncio.to_thread(scrape, server.server.metrics.port)
    for name in ("source_hits", "source_misses", "source_bytes_sent", "compiled_hits"):
        assert samples[(f"zako_code_cache_{name}_total", ())] == getattr(after, name), name


async def test_a_tenant_new_to_a_library_goes_to_the_worker_that_holds_it(server_factory):
    """Without texts, tenant B would take the cold worker (test_pool's affinity test);
    with a 100 kB library that one worker already holds, B goes there instead, and a
    task without it still takes the cold one."""
    server = server_factory(min_workers=2, max_workers=2)
    library = "module.exports = 7; // " + "l" * 100_000
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        for _ in range(50):  # both workers up, so neither is started mid-test
            if (await stub.Stats(pb.StatsRequest())).pool.idle == 2:
                break
            await asyncio.sleep(0.1)

        async def worker_of(tenant: str, with_library: bool) -> str:
            task = pb.Task(
                source="module.exports = () => require('./lib.js')"
                if with_library
                else "module.exports = 1",
                modules=[pb.Module(name="lib.js", source=library)] if with_library else [],
                cache=pb.CACHE_POLICY_SKIP,  # run, not answered from the action cache
            )
            worker = ""
            async for event in stub.Submit(
                iter([pb.SubmitRequest(task=task)]),
                timeout=30,
                metadata=[("x-zako-tenant", tenant)],
            ):
                if event.WhichOneof("event") == "started":
                    worker = event.started.worker_id
                assert event.WhichOneof("event") != "failed", event
            return worker

        holder = await worker_of("a", True)
        assert await worker_of("b", True) == holder
        assert await worker_of("c", False) not in {holder, ""}
