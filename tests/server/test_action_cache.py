"""The action cache (issue 15, part 3): keys, policy and eviction as pure logic, then hits,
misses, tenants, single-flight and the switch through real loopback servers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc
from zako_server.protocol import DoneEvent, FailureReason, HeapFigures, LogsEvent
from zako_server.server.action_cache import (
    ENTRY_OVERHEAD_BYTES,
    ActionCache,
    Outcome,
    _digest,
    runtime_fingerprint,
)
from zako_server.server.admission import Admission
from zako_server.server.engine import Engine
from zako_server.server.quotas import AdmissionPolicy
from zako_server.server.settings import Settings
from zako_server.server.validation import Job, validate

SETTINGS = Settings()


def job(tenant: str = "acme", **fields) -> Job:
    fields.setdefault("source", "module.exports = () => 1")
    return validate(pb.Task(**fields), SETTINGS, tenant=tenant)


def cache(capacity: int = 1 << 20, enabled: bool = True) -> ActionCache:
    return ActionCache(enabled, capacity, SETTINGS.max_message_bytes, fingerprint="f")


def key(tenant: str = "acme", fingerprint: str = "f", **fields) -> str | None:
    c = ActionCache(True, 1 << 20, SETTINGS.max_message_bytes, fingerprint=fingerprint)
    return c.key(job(tenant, **fields), tenant, pb.CACHE_POLICY_USE)


def completed(value: str) -> pb.SubmitResponse:
    return pb.SubmitResponse(
        task_id="t", completed=pb.Completed(result=pb.Result(value_json=value, worker_id="w3"))
    )


def failed(reason: pb.FailureReason) -> pb.SubmitResponse:
    return pb.SubmitResponse(
        task_id="t", failed=pb.Failed(reason=reason, error=pb.JsError(name="E", message="m"))
    )


# ---- pure logic -------------------------------------------------------------------------


def test_the_key_is_stable_and_ignores_the_task_id_and_priority():
    assert key(id="a", priority=1) == key(id="b", priority=-5)
    assert key(timeout=Duration(seconds=3)) == key(timeout=Duration(seconds=9))


@pytest.mark.parametrize(
    "change",
    [
        {"source": "module.exports = () => 2"},
        {"entry_name": "other.js"},
        {"input_json": "[1]"},
        {"seed": "s2"},
        {"epoch": Timestamp(seconds=1)},
        {"labels": {"a": "b"}},
        {"context": pb.CONTEXT_KIND_RULE},
        {"modules": [pb.Module(name="lib.js", source="x")]},
        {"resources": pb.ResourceRequests(memory_bytes=64 << 20)},
    ],
    ids=lambda change: next(iter(change)),
)
def test_anything_that_decides_the_outcome_changes_the_key(change):
    assert key(**change) != key()


def test_tenant_and_runtime_are_in_the_key():
    assert key(tenant="acme") != key(tenant="other")
    assert key(fingerprint="f") != key(fingerprint="g")


def test_key_parts_encode_unambiguously_even_with_a_lone_surrogate():
    # Where one part ends is part of the encoding: moving a boundary changes the digest.
    assert _digest(["a", "bc"]) != _digest(["ab", "c"]) != _digest(["abc"])
    assert _digest(['a", "b']) != _digest(["a", "b"])
    # JSON cannot hold a lone surrogate: such a part still has a key of its own.
    assert _digest(["a\ud800"]) not in {_digest(["a?"]), _digest(["a\ufffd"]), _digest(["a"])}
    assert _digest(["a\ud800"]) == _digest(["a\ud800"])


def test_module_digests_stand_for_the_text_when_validation_filled_none():
    with_digests = job(modules=[pb.Module(name="lib.js", source="x")])
    without = job(modules=[pb.Module(name="lib.js", source="x")])
    without.frame.digests.clear()
    c = cache()
    assert c.key(with_digests, "t", 0) == c.key(without, "t", 0)


def test_skip_system_access_and_the_switch_have_no_key():
    c = cache()
    assert c.key(job(), "t", pb.CACHE_POLICY_SKIP) is None
    config = job(context=pb.CONTEXT_KIND_CONFIG, system_access=True)
    assert c.key(config, "t", pb.CACHE_POLICY_USE) is None
    assert cache(enabled=False).key(job(), "t", pb.CACHE_POLICY_USE) is None
    assert c.key(job(), "t", pb.CACHE_POLICY_REFRESH) is not None


@pytest.mark.parametrize(
    "reason, stored",
    [
        (pb.FAILURE_REASON_JS_ERROR, True),
        (pb.FAILURE_REASON_SYNTAX_ERROR, True),
        (pb.FAILURE_REASON_RESULT_TOO_LARGE, True),
        (pb.FAILURE_REASON_TIMEOUT, False),
        (pb.FAILURE_REASON_OUT_OF_MEMORY, False),
        (pb.FAILURE_REASON_WORKER_LOST, False),
        (pb.FAILURE_REASON_INTERNAL, False),
        (pb.FAILURE_REASON_DEADLINE_EXCEEDED, False),
    ],
)
def test_only_failures_that_follow_from_the_inputs_are_stored(reason, stored):
    assert (Outcome.of(failed(reason), (), 0) is not None) is stored


def test_a_cancelled_task_is_not_stored_and_a_replay_is_marked_cached():
    cancelled = pb.SubmitResponse(task_id="t", cancelled=pb.Cancelled(reason="r"))
    assert Outcome.of(cancelled, (), 0) is None
    timings = pb.Timings(queued=Duration(nanos=5))
    outcome = Outcome.of(completed("[1]"), [pb.LogLine(message="hi")], 2)
    assert outcome is not None and outcome.logs_dropped == 2
    replay = outcome.terminal(timings)["completed"]
    assert replay.result.cached and replay.result.value_json == "[1]"
    assert replay.result.timings == timings
    assert replay.result.worker_id == ""  # a replay ran on no worker


def test_stored_lines_are_serialized_in_event_sized_batches_and_counted_as_such():
    lines = [pb.LogLine(level=pb.LOG_LEVEL_INFO, message=f"line {i}") for i in range(2500)]
    outcome = Outcome.of(completed("1"), lines, 0)
    assert outcome is not None and outcome.line_count == 2500
    heads = [pb.LogLine.FromString(batch) for batch in outcome.log_batches]
    assert [1 + len(head.more) for head in heads] == [1000, 1000, 500]
    back = [line for head in heads for line in (head, *head.more)]
    assert [line.message for line in back] == [line.message for line in lines]
    assert outcome.size == ENTRY_OVERHEAD_BYTES + 3 + sum(map(len, outcome.log_batches))


def test_lru_eviction_keeps_the_store_within_its_budget():
    one = Outcome.of(completed("x" * 100), (), 0)
    assert one is not None
    c = cache(capacity=3 * one.size)
    for name in "abcd":
        assert c.store(name, one)
    assert c.bytes <= c.capacity and c.statistics().entries == 3
    assert c.lookup("a") is None and c.evictions == 1
    c.lookup("b")  # now the most recently used: "c" goes next
    c.store("e", one)
    assert c.lookup("b") is not None and c.lookup("c") is None
    big = Outcome.of(completed("x" * 4 * one.size), (), 0)
    assert big is not None and not c.store("big", big) and c.statistics().entries == 3
    assert one.size >= ENTRY_OVERHEAD_BYTES


def test_the_runtime_fingerprint_follows_the_runtimes_files(tmp_path: Path):
    runtime = tmp_path / "worker" / "runtime"
    runtime.mkdir(parents=True)
    (tmp_path / "jsdeps").mkdir()
    (tmp_path / "jsdeps" / "package-lock.json").write_text("{}")
    (runtime / "prelude.js").write_text("a")
    before = runtime_fingerprint(tmp_path)
    assert runtime_fingerprint(tmp_path) == before
    (runtime / "prelude.js").write_text("b")
    assert runtime_fingerprint(tmp_path) != before
    assert len(runtime_fingerprint()) == 64


# ---- the engine's flows, with a pool that runs nothing until told -----------------------


class HeldPool:
    """Stands in for the worker pool: each run waits until the test ends it."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, asyncio.Future[DoneEvent], object]] = []

    async def run(self, frame, on_event, deadline=None) -> DoneEvent:
        done: asyncio.Future[DoneEvent] = asyncio.get_running_loop().create_future()
        self.runs.append((frame.id, done, on_event))
        return await done

    def cancel(self, task_id: str, frame) -> bool:
        for run_id, done, _ in self.runs:
            if run_id == task_id and not done.done():
                done.set_result(ended(task_id, reason=FailureReason.CANCELLED))
                return True
        return False

    def end(self, index: int, **fields) -> None:
        run_id, done, on_event = self.runs[index]
        on_event(LogsEvent(run_id, [["info", f"from {run_id}", 1.0]]), None)
        done.set_result(ended(run_id, **fields))


def ended(task_id: str, **fields) -> DoneEvent:
    fields.setdefault("value", "42" if "reason" not in fields else None)
    return DoneEvent(task_id, 0.001, 0.001, HeapFigures(1, 2, 3), 0, False, **fields)


def held_engine() -> tuple[Engine, HeldPool, dict[str, list[pb.SubmitResponse]]]:
    admission = Admission(
        AdmissionPolicy({"workers": 8.0, "cpu": 1e9, "memory": 1e15}, queue_capacity=100)
    )
    pool = HeldPool()
    engine = Engine(admission, pool, action_cache=cache())  # type: ignore[arg-type]
    return engine, pool, {}


def submit(engine: Engine, events: dict, task_id: str, **fields) -> None:
    events[task_id] = []
    engine.submit(job(id=task_id, **fields), object(), events[task_id].append, "acme")


def kinds(events: list[pb.SubmitResponse]) -> list[str]:
    return [e.WhichOneof("event") for e in events]


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_joiners_wait_without_a_lease_and_take_the_leaders_outcome():
    engine, pool, events = held_engine()
    for name in ("a", "b", "c"):
        submit(engine, events, name)
    await settle()
    assert len(pool.runs) == 1 and engine.admission.statistics().running == 1
    pool.end(0)
    await settle()
    assert [kinds(events[n]) for n in "bc"] == [["accepted", "log", "completed"]] * 2
    assert [events[n][-1].completed.result.cached for n in "abc"] == [False, True, True]
    assert events["b"][1].log.message == "from a"
    assert engine.action_cache.joins == 2 and engine.live_count() == 0


async def test_a_leader_that_times_out_hands_over_to_one_joiner():
    engine, pool, events = held_engine()
    for name in ("a", "b", "c"):
        submit(engine, events, name)
    await settle()
    pool.end(0, reason=FailureReason.TIMEOUT)
    await settle()
    assert len(pool.runs) == 2 and pool.runs[1][0] == "b"  # b runs, c joins b
    assert kinds(events["a"])[-1] == "failed" and kinds(events["c"]) == ["accepted"]
    pool.end(1)
    await settle()
    assert events["c"][-1].completed.result.cached and not events["b"][-1].completed.result.cached
    assert engine.action_cache.statistics().entries == 1 and engine.live_count() == 0


async def test_an_uncacheable_outcome_is_not_stored_and_its_joiners_run():
    engine, pool, events = held_engine()
    submit(engine, events, "a")
    submit(engine, events, "b")
    await settle()
    pool.end(0, uncacheable=True)
    await settle()
    assert len(pool.runs) == 2 and engine.action_cache.statistics().entries == 0
    pool.end(1, uncacheable=True)
    await settle()
    assert kinds(events["b"])[-1] == "completed" and engine.live_count() == 0


class ClosedGate:
    """A stream whose client reads nothing, until `opened` is set."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()

    @property
    def is_open(self) -> bool:
        return self.opened.is_set()

    async def wait_open(self) -> None:
        await self.opened.wait()


async def test_a_leader_held_by_its_streams_backpressure_lets_a_joiner_lead():
    engine, pool, events = held_engine()
    gate = ClosedGate()
    events["a"] = []
    engine.submit(job(id="a"), object(), events["a"].append, "acme", gate)
    submit(engine, events, "b")
    await settle()
    assert [run_id for run_id, _, _ in pool.runs] == ["b"] and engine.held == 1
    gate.opened.set()
    await settle()
    assert [run_id for run_id, _, _ in pool.runs] == ["b", "a"]
    pool.end(0)
    pool.end(1)
    await settle()
    assert kinds(events["a"])[-1] == kinds(events["b"])[-1] == "completed"
    assert engine.live_count() == 0


async def test_cancels_at_once_end_a_hit_a_joiner_and_a_queued_task_once_each():
    """Cancelled in the same turn as submitted, before their runners' first step: each
    still ends with exactly one Cancelled, and the queued one's lease comes back."""
    engine, pool, events = held_engine()
    submit(engine, events, "lead")
    await settle()
    pool.end(0)
    await settle()
    submit(engine, events, "hit")
    engine.cancel("hit", "now", tenant="acme")
    submit(engine, events, "plain", source="module.exports = 'other'")
    engine.cancel("plain", "now", tenant="acme")
    submit(engine, events, "lead2", source="module.exports = 'third'")
    await settle()
    submit(engine, events, "joiner", source="module.exports = 'third'")
    engine.cancel("joiner", "now", tenant="acme")
    await settle()
    for name in ("hit", "plain", "joiner"):
        assert kinds(events[name]) == ["accepted", "cancelled"], name
    assert engine.admission.statistics().running == 1  # lead2 only
    pool.end(len(pool.runs) - 1)
    await settle()
    assert not events["lead2"][-1].completed.result.cached and engine.live_count() == 0
    assert engine.admission.statistics().running == 0


# ---- through a real server ----------------------------------------------------------------

SLOW = "let x = 0; for (let i = 0; i < 2e8; i++) x = (x + i) % 7919; module.exports = () => x"


def task(source: str = "console.log('hi'); module.exports = (i) => [i, 42]", **fields) -> pb.Task:
    fields.setdefault("timeout", Duration(seconds=30))
    fields.setdefault("input_json", "7")
    return pb.Task(source=source, **fields)


async def run(stub, t: pb.Task, tenant: str = "acme") -> pb.RunResponse:
    return await stub.Run(pb.RunRequest(task=t), metadata=(("x-zako-tenant", tenant),), timeout=60)


async def stats(stub) -> pb.StatsResponse:
    return await stub.Stats(pb.StatsRequest(), timeout=30)


def tasks_run(reply: pb.StatsResponse) -> int:
    return sum(w.tasks_run for w in reply.pool.workers)


@pytest.fixture
async def stub(server_factory):
    server = server_factory()
    async with grpc.aio.insecure_channel(server.target) as channel:
        yield pb_grpc.ExecutorStub(channel)


async def test_a_repeated_task_is_answered_from_the_cache_without_a_worker(stub):
    first = await run(stub, task())
    before = await stats(stub)
    second = await run(stub, task(id="again"))
    after = await stats(stub)
    assert not first.completed.result.cached and second.completed.result.cached
    # The unary answer names the worker that ran it; the replay ran on none.
    assert first.completed.result.worker_id.startswith("w")
    assert second.completed.result.worker_id == ""
    assert second.completed.result.value_json == first.completed.result.value_json == "[7,42]"
    assert [line.message for line in second.logs] == [line.message for line in first.logs]
    assert [line.message for line in second.logs] == ["hi"]
    assert second.task_id == "again" and second.completed.result.timings.run == Duration()
    assert tasks_run(after) == tasks_run(before) and after.action_cache.hits == 1
    assert after.action_cache.entries == 1 and after.action_cache.misses == 1
    assert after.tasks.completed == 2 and after.tasks.accepted == 2


@pytest.mark.parametrize(
    "change",
    [
        {"input_json": "8"},
        {"seed": "another"},
        {"epoch": Timestamp(seconds=86400)},
        {"labels": {"team": "x"}},
        {"source": "console.log('hi'); module.exports = (i) => [i, 43]"},
    ],
    ids=lambda change: next(iter(change)),
)
async def test_a_different_task_is_a_miss(stub, change):
    await run(stub, task())
    reply = await run(stub, task(**change))
    assert reply.WhichOneof("outcome") == "completed" and not reply.completed.result.cached


async def test_one_tenants_outcome_is_never_another_tenants_hit(stub):
    await run(stub, task(), tenant="a")
    other = await run(stub, task(), tenant="b")
    again = await run(stub, task(), tenant="a")
    assert not other.completed.result.cached and again.completed.result.cached


async def test_system_access_tasks_are_never_cached(stub):
    source = "module.exports = () => typeof Date.now()"
    t = task(source, context=pb.CONTEXT_KIND_CONFIG, system_access=True)
    replies = [await run(stub, t) for _ in range(2)]
    assert [r.completed.result.cached for r in replies] == [False, False]
    assert (await stats(stub)).action_cache.entries == 0


async def test_a_timeout_is_not_cached_and_a_js_error_is(stub):
    loop = task("module.exports = () => { for (;;) {} }", timeout=Duration(nanos=200_000_000))
    timeouts = [await run(stub, loop) for _ in range(2)]
    assert [r.failed.reason for r in timeouts] == [pb.FAILURE_REASON_TIMEOUT] * 2
    assert not any(r.failed.cached for r in timeouts)
    boom = task("console.log('about to'); throw new TypeError('boom')")
    errors = [await run(stub, boom) for _ in range(2)]
    assert [r.failed.reason for r in errors] == [pb.FAILURE_REASON_JS_ERROR] * 2
    assert [r.failed.cached for r in errors] == [False, True]
    assert errors[1].failed.error.message == errors[0].failed.error.message
    assert [line.message for line in errors[1].logs] == ["about to"]
    figures = await stats(stub)
    assert figures.action_cache.entries == 1 and figures.tasks.failed_by_reason["JS_ERROR"] == 2


async def test_a_task_that_reads_its_id_is_not_cached(stub):
    t = task("const { taskId } = require('zako:context'); module.exports = () => taskId.length")
    replies = [await run(stub, t) for _ in range(2)]
    assert [r.completed.result.cached for r in replies] == [False, False]
    assert (await stats(stub)).action_cache.entries == 0


async def test_refresh_runs_and_stores_skip_neither_reads_nor_writes(stub):
    await run(stub, task())
    refreshed = await run(stub, task(cache=pb.CACHE_POLICY_REFRESH))
    skipped = await run(stub, task(cache=pb.CACHE_POLICY_SKIP))
    used = await run(stub, task(cache=pb.CACHE_POLICY_USE))
    assert not refreshed.completed.result.cached and not skipped.completed.result.cached
    assert used.completed.result.cached
    figures = (await stats(stub)).action_cache
    assert (figures.stores, figures.hits, figures.entries) == (2, 1, 1)
    other = task("module.exports = () => 'skip only'", cache=pb.CACHE_POLICY_SKIP)
    assert not (await run(stub, other)).completed.result.cached
    assert not (await run(stub, other)).completed.result.cached
    assert (await stats(stub)).action_cache.entries == 1


async def test_the_switch_turns_the_cache_off(server_factory):
    server = server_factory(action_cache="false")
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        replies = [await run(stub, task()) for _ in range(2)]
        assert [r.completed.result.cached for r in replies] == [False, False]
        figures = await stats(stub)
        assert not figures.action_cache.enabled and figures.action_cache.entries == 0
        capabilities = await stub.Capabilities(pb.CapabilitiesRequest(), timeout=30)
        assert not capabilities.action_cache


async def test_the_stats_and_capabilities_show_the_cache(stub):
    capabilities = await stub.Capabilities(pb.CapabilitiesRequest(), timeout=30)
    figures = (await stats(stub)).action_cache
    assert capabilities.action_cache and figures.enabled
    assert figures.capacity_bytes == Settings().action_cache_bytes


async def _submit(stub, tasks: list[pb.Task], cancel: str = "", after: str = ""):
    """Submit `tasks` on one stream; once `after` has started, cancel `cancel`. Returns
    every task's events by id, in arrival order."""
    started = asyncio.Event()
    done = asyncio.Event()

    async def requests():
        for t in tasks:
            yield pb.SubmitRequest(task=t)
        if cancel:
            await started.wait()
            yield pb.SubmitRequest(cancel=pb.CancelTask(task_id=cancel))
        await done.wait()

    events: dict[str, list[pb.SubmitResponse]] = {t.id: [] for t in tasks}
    ended = 0
    call = stub.Submit(requests(), metadata=(("x-zako-tenant", "acme"),), timeout=120)
    async for event in call:
        events[event.task_id].append(event)
        kind = event.WhichOneof("event")
        if kind == "started" and event.task_id == after:
            started.set()
        if kind in ("completed", "failed", "cancelled", "rejected"):
            ended += 1
            if ended == len(tasks):
                done.set()
                break
    call.cancel()
    return events


def _end(events: list[pb.SubmitResponse]) -> pb.SubmitResponse:
    ends = [e for e in events if e.WhichOneof("event") in ("completed", "failed", "cancelled")]
    assert len(ends) == 1, events
    return ends[0]


async def test_identical_tasks_in_flight_run_once(stub):
    before = await stats(stub)
    tasks = [task(SLOW, id=f"t{i}") for i in range(4)]
    events = await _submit(stub, tasks)
    ends = [_end(events[t.id]) for t in tasks]
    assert [e.WhichOneof("event") for e in ends] == ["completed"] * 4
    assert len({e.completed.result.value_json for e in ends}) == 1
    assert [e.completed.result.cached for e in ends] == [False, True, True, True]
    assert [e.WhichOneof("event") for e in events["t1"]] == ["accepted", "completed"]
    after = await stats(stub)
    assert tasks_run(after) - tasks_run(before) == 1
    assert after.action_cache.joins == 3


async def test_joiners_of_a_cancelled_leader_still_complete(stub):
    before = await stats(stub)
    tasks = [task(SLOW, id=f"t{i}") for i in range(3)]
    events = await _submit(stub, tasks, cancel="t0", after="t0")
    ends = {t.id: _end(events[t.id]) for t in tasks}
    assert ends["t0"].WhichOneof("event") == "cancelled"
    assert [ends[i].WhichOneof("event") for i in ("t1", "t2")] == ["completed"] * 2
    values = {ends[i].completed.result.value_json for i in ("t1", "t2")}
    assert len(values) == 1
    # One joiner ran in the leader's place, the other took its outcome.
    assert sorted(ends[i].completed.result.cached for i in ("t1", "t2")) == [False, True]
    assert tasks_run(await stats(stub)) - tasks_run(before) == 2


async def test_a_joiner_cancelled_alone_leaves_its_leader_running(stub):
    tasks = [task(SLOW, id=f"t{i}") for i in range(2)]
    events = await _submit(stub, tasks, cancel="t1", after="t0")
    assert _end(events["t1"]).WhichOneof("event") == "cancelled"
    leader = _end(events["t0"])
    assert leader.WhichOneof("event") == "completed" and not leader.completed.result.cached
    assert (await stats(stub)).action_cache.entries == 1


async def test_eviction_keeps_the_cache_within_its_budget(server_factory):
    server = server_factory(action_cache_bytes="8KiB")
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        for i in range(12):
            await run(stub, task("module.exports = (i) => 'x'.repeat(1000) + i", input_json=str(i)))
        figures = (await stats(stub)).action_cache
        assert figures.bytes <= figures.capacity_bytes == 8 << 10
        assert figures.evictions > 0 and figures.entries < 12 and figures.stores == 12
        last = task("module.exports = (i) => 'x'.repeat(1000) + i", input_json="11")
        assert (await run(stub, last)).completed.result.cached
        first = task("module.exports = (i) => 'x'.repeat(1000) + i", input_json="0")
        assert not (await run(stub, first)).completed.result.cached


async def test_the_metrics_carry_the_cache(server_factory):
    server = server_factory()
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        await run(stub, task())
        await run(stub, task())
    from prometheus_client import generate_latest

    text = generate_latest(server.server.metrics.registry).decode()
    assert "zako_action_cache_hits_total 1.0" in text
    assert "zako_action_cache_entries 1.0" in text
