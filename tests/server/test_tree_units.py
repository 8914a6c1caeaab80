"""A ModuleTree as a unit in validation (issue #15): checked and resolved once, resolved
again (or refused, naming what is gone) once the store removed anything, kept warm in
the store while in use, keyed whole in the action cache; and through a real server."""

from __future__ import annotations

import hashlib
import json

import grpc
import pytest

from tests.server.test_cas_service import digest, tree_of, upload
from zako_sdk.proto.zako.v1 import cas_pb2
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc
from zako_server.server.action_cache import action_key
from zako_server.server.cas import ContentStore
from zako_server.server.errors import InvalidTask, MissingBlobs
from zako_server.server.settings import Settings
from zako_server.server.trees import REFRESH_S, TreeMemo
from zako_server.server.validation import Job, validate

SETTINGS = Settings()
FILES = {
    "lib/a.js": b"module.exports = 'a';",
    "lib/b.js": b"module.exports = 'b';",
    "node_modules/p/package.json": json.dumps({"name": "p", "main": "i.js"}).encode(),
    "node_modules/p/i.js": b"module.exports = require('../../lib/a.js') + 'p';",
}
MAIN = "module.exports = () => [require('p'), require('./lib/b.js')];"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key_of(data: bytes) -> tuple[str, int]:
    return hashlib.sha256(data).hexdigest(), len(data)


async def stored(files: dict[str, bytes], clock: Clock | None = None, ttl: float = 600):
    store = ContentStore(64 << 20, ttl, 1 << 20, **({"clock": clock} if clock else {}))
    tree = tree_of(files)
    for data in (*files.values(), tree):
        await store.upload("t", *key_of(data), data)
    return store, digest(tree)


def job(store: ContentStore, memo: TreeMemo, tree: cas_pb2.Digest, **fields) -> Job:
    fields.setdefault("source", MAIN)
    task = pb.Task(tree=tree, **fields)
    return validate(task, SETTINGS, tenant="t", store=store, trees=memo)


async def test_a_tree_is_resolved_once_until_the_store_removes_a_blob():
    store, tree = await stored(FILES)
    memo = TreeMemo()
    first = job(store, memo, tree)
    hits = store.statistics().hits
    second = job(store, memo, tree)
    assert second.frame.tree_files is first.frame.tree_files
    assert store.statistics().hits == hits + 1  # the tree blob only, not one per file
    gone = key_of(FILES["lib/b.js"])
    assert store.evict(gone)
    with pytest.raises(MissingBlobs) as info:
        job(store, memo, tree)
    assert info.value.missing == [gone]
    # A job validated before the eviction still holds every text it named.
    assert first.frame.tree_files.texts["lib/b.js"] == FILES["lib/b.js"].decode()
    await store.upload("t", *gone, FILES["lib/b.js"])
    third = job(store, memo, tree)
    assert third.frame.tree_files is not first.frame.tree_files
    assert third.frame.tree_files.texts == first.frame.tree_files.texts


async def test_an_unrelated_eviction_makes_the_tree_resolve_again_not_fail():
    store, tree = await stored(FILES)
    await store.upload("t", *key_of(b"other"), b"other")
    memo = TreeMemo()
    first = job(store, memo, tree)
    store.evict(key_of(b"other"))
    again = job(store, memo, tree)
    assert again.frame.tree_files is not first.frame.tree_files
    assert job(store, memo, tree).frame.tree_files is again.frame.tree_files


async def test_a_tree_in_use_stays_in_the_store_past_its_ttl():
    clock = Clock()
    store, tree = await stored(FILES, clock, ttl=10 * REFRESH_S)
    memo = TreeMemo(clock)
    first = job(store, memo, tree)
    for _ in range(4):  # 24 refresh periods, 2.4 TTLs: its files are refreshed all along
        clock.now += 6 * REFRESH_S
        assert job(store, memo, tree).frame.tree_files is first.frame.tree_files
    clock.now += 11 * REFRESH_S  # unused for a TTL: every blob expires
    with pytest.raises(MissingBlobs):
        job(store, memo, tree)


async def test_task_checks_still_apply_to_a_remembered_tree():
    store, tree = await stored(FILES)
    memo = TreeMemo()
    job(store, memo, tree)
    twice = pb.Module(name="lib/a.js", source="module.exports = 'shadow';")
    with pytest.raises(InvalidTask, match="given twice") as info:
        job(store, memo, tree, modules=[twice])
    assert info.value.field == "task.tree"
    small = Settings(max_tree_bytes=100)
    with pytest.raises(InvalidTask, match="max_tree_bytes"):
        validate(pb.Task(source=MAIN, tree=tree), small, tenant="t", store=store, trees=memo)
    few = Settings(max_modules=4)
    with pytest.raises(InvalidTask, match="max_modules"):
        validate(
            pb.Task(source=MAIN, tree=tree, modules=[pb.Module(name="x.js", source="1")]),
            few,
            tenant="t",
            store=store,
            trees=memo,
        )


async def test_a_package_json_beside_the_tree_makes_its_files_the_tasks_own():
    store, tree = await stored(FILES)
    memo = TreeMemo()
    manifest = pb.Module(name="lib/package.json", source='{"type": "module"}')
    found = job(store, memo, tree, modules=[manifest])
    assert found.frame.tree_files is None
    assert set(found.frame.modules) == {"main.js", "lib/package.json", *FILES}


async def test_the_action_key_covers_every_file_of_the_tree():
    store, tree = await stored(FILES)
    memo = TreeMemo()
    changed = {**FILES, "node_modules/p/i.js": FILES["node_modules/p/i.js"] + b" "}
    store2, tree2 = await stored(changed)

    def key(store: ContentStore, tree: cas_pb2.Digest) -> str:
        return action_key(job(store, memo, tree), "t", "f", 1 << 20)

    assert key(store, tree) == key(store, tree)
    assert key(store, tree) != key(store2, tree2)


async def test_a_tree_evicted_between_two_tasks_is_refused_then_runs_again(zako_server):
    files = {
        "lib/a.js": b"module.exports = 'a' + Math.random();",
        "lib/b.js": b"module.exports = 'evicted-between-tasks';",
    }
    source = "module.exports = () => [require('./lib/a.js').length, require('./lib/b.js')];"
    tree = tree_of(files)
    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        await upload(stub, [*files.values(), tree])
        task = pb.Task(source=source, tree=digest(tree), cache=pb.CACHE_POLICY_SKIP)
        for _ in range(3):
            reply = await stub.Run(pb.RunRequest(task=task), timeout=60)
            assert json.loads(reply.completed.result.value_json)[1] == "evicted-between-tasks"
        gone = key_of(files["lib/b.js"])

        async def evict() -> bool:
            return zako_server.server.service.store.evict(gone)

        assert zako_server.call(evict())
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Run(pb.RunRequest(task=task), timeout=60)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"{gone[0]}/{gone[1]}" in (info.value.details() or "")
        await upload(stub, [files["lib/b.js"]])
        reply = await stub.Run(pb.RunRequest(task=task), timeout=60)
        assert json.loads(reply.completed.result.value_json)[1] == "evicted-between-tasks"


@pytest.mark.parametrize(
    ("files", "entry"),
    [
        ({"main.js": "module.exports = () => {\n  let x = ;\n};"}, "main.js"),
        ({"main.js": "module.exports = () => require('./bad.js');", "bad.js": "\n\n  )"}, ""),
        ({"main.mjs": "export default () => 1;\nconst = 2;"}, "main.mjs"),
        ({"main.js": "module.exports = () => require('./t.ts')();", "t.ts": "export = 1 +;"}, ""),
        ({"main.js": "module.exports = () => { throw new Error('boom'); };"}, "main.js"),
        ({"main.js": "module.exports = () => require('./nope');"}, "main.js"),
    ],
)
async def test_a_failing_tree_fails_exactly_as_the_same_files_inline(zako_server, files, entry):
    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        blobs = {name: text.encode() for name, text in files.items()}
        tree = tree_of(blobs)
        await upload(stub, [*blobs.values(), tree])
        name = entry or "main.js"
        common = {"entry_name": name, "cache": pb.CACHE_POLICY_SKIP}
        inline = pb.Task(
            source=files[name],
            modules=[pb.Module(name=n, source=t) for n, t in files.items() if n != name],
            **common,
        )
        by_tree = pb.Task(tree=digest(tree), **common)
        failures = []
        for task in (inline, by_tree):
            reply = await stub.Run(pb.RunRequest(task=task), timeout=60)
            assert reply.WhichOneof("outcome") == "failed", reply
            failures.append(reply.failed)
        a, b = failures
        assert (a.reason, a.error.name, a.error.message) == (
            b.reason,
            b.error.name,
            b.error.message,
        )
        assert (a.error.module, a.error.line, a.error.column) == (
            b.error.module,
            b.error.line,
            b.error.column,
        )
        assert a.error.stack == b.error.stack


async def test_a_tree_missing_a_blob_another_module_names_too_is_not_remembered():
    store, tree = await stored(FILES)
    memo = TreeMemo()
    gone = key_of(FILES["lib/b.js"])
    store.evict(gone)
    also = pb.Module(name="x.js", digest=digest(FILES["lib/b.js"]))
    for modules in ([also], []):
        with pytest.raises(MissingBlobs) as info:
            job(store, memo, tree, modules=modules)
        assert info.value.missing == [gone]
