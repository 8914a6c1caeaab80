"""A ModuleTree as one unit through a real worker's pipes (issue #15): validation's frames
(against a real content store), the parent's mirror, the worker's store and the isolate.
A repeated tree costs the frame one digest; the pack crosses once per worker; trees
share texts without losing them; every task still gets fresh module instances."""

from __future__ import annotations

import hashlib
import json

import msgspec

from tests.worker.test_process import ok_value
from tests.worker.test_process import worker as worker  # the fixture
from zako_sdk.proto.zako.v1 import cas_pb2
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_server import codec
from zako_server.protocol import DoneEvent, RunFrame, StartedEvent
from zako_server.server.cas import ContentStore
from zako_server.server.code_mirror import CodeCacheCounters, DigestMemo, SourceMirror
from zako_server.server.settings import Settings
from zako_server.server.trees import TreeMemo
from zako_server.server.validation import Job, validate

SETTINGS = Settings()
# A module with state: a task that saw another task's instance would count past 1.
COUNTER = "let calls = 0; module.exports = () => ++calls;"
ENTRY = (
    "const count = require('counter'); const pad = require('lib/pad.js');\n"
    "module.exports = (n) => [count(), pad(n)];"
)


def tree_files(tag: str, n: int = 40) -> dict[str, str]:
    files = {
        "node_modules/counter/package.json": json.dumps({"name": "counter", "main": "c.js"}),
        "node_modules/counter/c.js": COUNTER,
        "lib/pad.js": f"module.exports = (n) => '{tag}' + String(n).padStart(3, '0');",
    }
    for i in range(n):  # files nobody loads: the bulk of a real tree
        files[f"node_modules/bulk/f{i}.js"] = f"module.exports = {i}; // {tag} " + "x" * 200
    return files


def tree_blob(files: dict[str, str]) -> bytes:
    entries = [
        cas_pb2.TreeEntry(
            name=name,
            digest=cas_pb2.Digest(
                hash=hashlib.sha256(text.encode()).hexdigest(), size_bytes=len(text.encode())
            ),
        )
        for name, text in sorted(files.items())
    ]
    return cas_pb2.ModuleTree(files=entries).SerializeToString()


async def upload(store: ContentStore, files: dict[str, str]) -> cas_pb2.Digest:
    blob = tree_blob(files)
    for data in (*(t.encode() for t in files.values()), blob):
        await store.upload("t", hashlib.sha256(data).hexdigest(), len(data), data)
    return cas_pb2.Digest(hash=hashlib.sha256(blob).hexdigest(), size_bytes=len(blob))


class Server:
    """Validation (with a tree memo) and one worker's mirror, as the server has them."""

    def __init__(self, client, capacity: int = 1 << 20) -> None:
        self.client = client
        self.store = ContentStore(capacity=64 << 20, ttl=600, max_blob_bytes=1 << 20)
        self.trees = TreeMemo()
        self.mirror = SourceMirror(capacity, CodeCacheCounters(), DigestMemo())
        self.sent: list[RunFrame] = []
        self.count = 0

    def job(self, tree: cas_pb2.Digest, n: int, **fields) -> Job:
        self.count += 1
        fields.setdefault("source", ENTRY)
        task = pb.Task(id=f"t{self.count}", tree=tree, input_json=str(n), **fields)
        return validate(task, SETTINGS, tenant="t", store=self.store, trees=self.trees)

    async def run(self, job: Job) -> DoneEvent:
        wire = self.mirror.wire(job.frame)
        self.sent.append(wire)
        self.client.send(wire)
        events = await self.client.until_done(wire.id)
        assert events[0] == StartedEvent(wire.id)
        done = events[-1]
        assert isinstance(done, DoneEvent)
        self.mirror.finished(done)
        return done


async def test_a_repeated_tree_costs_the_frame_one_digest(worker):
    server = Server(worker)
    files = tree_files("a")
    digest = await upload(server.store, files)
    first, second = server.job(digest, 1), server.job(digest, 2)
    # Validation resolved the tree once: the second job shares the first one's files.
    assert second.frame.tree_files is first.frame.tree_files
    assert set(first.frame.modules) == {"main.js"}
    assert ok_value(await server.run(first)) == [1, "a001"]
    assert ok_value(await server.run(second)) == [1, "a002"]
    for n in range(3, 6):  # a warm isolate: still a fresh counter every task
        assert ok_value(await server.run(server.job(digest, n, fresh_isolate=False))) == [
            1,
            f"a00{n}",
        ]
    one, two, *later = server.sent
    assert one.tree is not None and one.tree in one.sources  # the pack, once
    assert set(one.tree_texts) >= {hashlib.sha256(t.encode()).hexdigest() for t in files.values()}
    for wire in (two, *later):
        assert wire.tree == one.tree
        assert wire.tree_texts == {} and wire.sources == {} and wire.forget == []
        assert set(wire.digests) == {"main.js"}
        encoded = codec.encode(wire)
        # Only the task's own entry and one digest: no path of the tree travels.
        assert b"node_modules" not in encoded and len(encoded) < 2_000


async def test_a_task_with_inline_modules_extends_its_tree(worker):
    server = Server(worker)
    digest = await upload(server.store, tree_files("b"))
    extra = pb.Module(name="lib/extra.js", source="module.exports = require('./pad.js')(7);")
    job = server.job(
        digest,
        1,
        source="module.exports = () => [require('./lib/extra.js'), require('counter')()];",
        modules=[extra],
    )
    assert job.frame.tree_files is not None and set(job.frame.modules) == {
        "main.js",
        "lib/extra.js",
    }
    assert ok_value(await server.run(job)) == ["b007", 1]


async def test_two_trees_share_texts_and_an_evicted_tree_takes_none_from_the_other(worker):
    a_files, b_files = tree_files("a", 10), tree_files("b", 10)
    b_files["lib/pad.js"] = a_files["lib/pad.js"]  # shared, as the counter is
    server = Server(worker)
    a = await upload(server.store, a_files)
    b = await upload(server.store, b_files)
    jobs = [server.job(a, 1), server.job(b, 2), server.job(b, 3), server.job(a, 4)]
    sizes = [server.mirror.pack_of(job.frame).size for job in jobs[:2]]
    # Room for one tree's pack at a time: each evicts the other.
    server.mirror.capacity = max(sizes) + 100
    assert sum(sizes) > server.mirror.capacity
    assert [ok_value(await server.run(job)) for job in jobs] == [
        [1, f"a00{n}"] for n in (1, 2, 3, 4)
    ]
    wire_a, wire_b, again_b, again_a = server.sent
    assert wire_b.forget == [wire_a.tree] and again_a.forget == [wire_b.tree]
    assert again_b.sources == {} and again_b.tree_texts == {}
    # A shared text is sent again only because its last holder went in the same frame.
    shared = hashlib.sha256(COUNTER.encode()).hexdigest()
    assert shared in wire_a.tree_texts and shared in wire_b.tree_texts


async def test_two_held_trees_share_a_text_sent_once(worker):
    a_files, b_files = tree_files("a", 5), tree_files("b", 5)
    server = Server(worker)
    a = await upload(server.store, a_files)
    b = await upload(server.store, b_files)
    assert ok_value(await server.run(server.job(a, 1))) == [1, "a001"]
    assert ok_value(await server.run(server.job(b, 2))) == [1, "b002"]
    shared = hashlib.sha256(COUNTER.encode()).hexdigest()
    wire_a, wire_b = server.sent
    assert shared in wire_a.tree_texts and shared not in wire_b.tree_texts
    # The worker holds both; a stale frame naming a pack it was never sent fails, and
    # the parent forgets the pack (then sends it again).
    stale = msgspec.structs.replace(wire_b, id="stale", tree="0" * 64, sources={}, tree_texts={})
    server.client.send(stale)
    done = (await server.client.until_done("stale"))[-1]
    assert isinstance(done, DoneEvent) and done.missing == ["0" * 64]
    assert ok_value(await server.run(server.job(b, 3))) == [1, "b003"]


async def test_a_malformed_pack_fails_its_task_only(worker):
    server = Server(worker)
    digest = await upload(server.store, tree_files("c", 3))
    good = server.mirror.wire(server.job(digest, 1).frame)
    bad = msgspec.structs.replace(good, id="bad", tree="1" * 64, sources={"1" * 64: "[not a pack"})
    server.client.send(bad)
    done = (await server.client.until_done("bad"))[-1]
    assert isinstance(done, DoneEvent) and "1" * 64 in done.missing
    server.client.send(good)
    done = (await server.client.until_done(good.id))[-1]
    assert ok_value(done) == [1, "c001"]
