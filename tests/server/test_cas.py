"""The content-addressed store on its own: LRU, TTL (an injected clock), the budget,
verification on upload, per-tenant presence; and validation resolving digests."""

from __future__ import annotations

import hashlib

import pytest

from zako_sdk.proto.zako.v1 import cas_pb2
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_server.server.cas import BLOB_OVERHEAD, EMPTY_KEY, ContentStore, text_cost
from zako_server.server.config import build_settings
from zako_server.server.errors import BlobTooLarge, InvalidBlob, InvalidTask, MissingBlobs
from zako_server.server.validation import validate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key_of(data: bytes) -> tuple[str, int]:
    return hashlib.sha256(data).hexdigest(), len(data)


def blob(i: int, size: int = 1000) -> bytes:
    return (f"// blob {i}\n".encode() + b"x" * size)[:size]


async def put(store: ContentStore, data: bytes, tenant: str = "t") -> tuple[str, int]:
    hash_, size = key_of(data)
    return await store.upload(tenant, hash_, size, data)


async def test_least_recently_used_blob_is_evicted_first():
    store = ContentStore(capacity=3 * (1000 + BLOB_OVERHEAD + 64), ttl=60, max_blob_bytes=1000)
    a, b, c = [await put(store, blob(i)) for i in range(3)]
    assert store.find_missing("t", [a, b, c]) == []
    assert store.has("t", a)  # a is now the most recently used; b the least
    d = await put(store, blob(3))
    assert store.find_missing("t", [a, b, c, d]) == [1]
    assert store.statistics().evictions == 1


async def test_budget_is_never_exceeded_under_a_load_of_distinct_blobs():
    capacity = 64 << 10
    store = ContentStore(capacity=capacity, ttl=60, max_blob_bytes=16 << 10)
    kept = []
    for i in range(500):
        key = await put(store, blob(i, size=1 + (i * 7919) % (16 << 10)))
        kept.append(key)
        stats = store.statistics()
        assert stats.bytes <= capacity
        if i % 3 == 0:  # used as text too: the text's cost replaces the bytes'
            store.text("t", key)
            assert store.statistics().bytes <= capacity
    stats = store.statistics()
    assert stats.uploads == 500 and stats.evictions > 400
    assert stats.blobs == len(kept) - len(store.find_missing("t", kept))
    # many tiny blobs: the per-blob overhead is counted, so their number is bounded too
    tiny = ContentStore(capacity=10_000, ttl=60, max_blob_bytes=100)
    for i in range(1000):
        await put(tiny, f"{i}".encode(), "t")
        assert tiny.statistics().bytes <= 10_000
    assert tiny.statistics().blobs < 10_000 // BLOB_OVERHEAD


async def test_blobs_unused_for_their_ttl_are_dropped_and_use_refreshes_them():
    clock = Clock()
    store = ContentStore(capacity=1 << 20, ttl=10, max_blob_bytes=1 << 16, clock=clock)
    a = await put(store, blob(1))
    b = await put(store, blob(2))
    clock.now += 6
    assert store.text("t", a) is not None  # used: its ten seconds start again
    clock.now += 6
    assert store.find_missing("t", [a, b]) == [1]
    clock.now += 11
    assert store.statistics().blobs == 0
    assert store.statistics().evictions == 2


async def test_uploads_are_verified_by_hash_and_size():
    store = ContentStore(capacity=1 << 20, ttl=60, max_blob_bytes=1000)
    data = b"module.exports = 1;"
    hash_, size = key_of(data)
    with pytest.raises(InvalidBlob, match="SHA-256"):
        await store.upload("t", hash_, size, data.replace(b"1", b"2"))
    with pytest.raises(InvalidBlob, match="bytes"):
        await store.upload("t", hash_, size + 1, data)
    with pytest.raises(InvalidBlob, match="not a valid digest"):
        await store.upload("t", hash_.upper(), size, data)
    with pytest.raises(BlobTooLarge, match="max_blob_bytes"):
        await store.upload("t", *key_of(b"x" * 1001), b"x" * 1001)
    assert store.statistics().blobs == 0 and store.statistics().uploads == 0
    big = b"y" * (2 << 20)  # hashed in a thread
    large = ContentStore(capacity=8 << 20, ttl=60, max_blob_bytes=4 << 20)
    assert await put(large, big) == key_of(big)
    with pytest.raises(InvalidBlob):
        await large.upload("t", key_of(big)[0], len(big), b"z" * len(big))


async def test_a_blob_is_present_only_for_the_tenants_that_uploaded_it():
    store = ContentStore(capacity=1 << 20, ttl=60, max_blob_bytes=1 << 16)
    key = await put(store, blob(1), "acme")
    assert store.find_missing("rival", [key]) == [0]
    assert store.text("rival", key) is None
    await put(store, blob(1), "rival")  # proves it holds the bytes; stored once
    assert store.find_missing("rival", [key]) == []
    assert store.statistics().blobs == 1
    store.evict(key)  # eviction is for everyone
    assert store.find_missing("acme", [key]) == [0]
    assert store.find_missing("rival", [EMPTY_KEY]) == []  # the empty blob always is


async def test_text_is_decoded_once_kept_and_counted_as_what_it_costs():
    store = ContentStore(capacity=1 << 20, ttl=60, max_blob_bytes=1 << 16)
    data = "const π = 3.14;".encode()
    key = await put(store, data)
    before = store.statistics().bytes
    first = store.text("t", key)
    assert first == "const π = 3.14;" and store.text("t", key) is first
    assert store.statistics().bytes == before - len(data) + text_cost(first)
    bad = await put(store, b"\xff\xfe not utf-8")
    with pytest.raises(UnicodeDecodeError):
        store.text("t", bad)


# ---- validation resolving digests --------------------------------------------------------

SETTINGS = build_settings({"max_source_bytes": "1000", "max_tree_bytes": "3000"}, env={})


def digest(data: bytes) -> cas_pb2.Digest:
    hash_, size = key_of(data)
    return cas_pb2.Digest(hash=hash_, size_bytes=size)


def tree_blob(files: dict[str, bytes]) -> bytes:
    entries = [cas_pb2.TreeEntry(name=n, digest=digest(d)) for n, d in sorted(files.items())]
    return cas_pb2.ModuleTree(files=entries).SerializeToString()


async def test_digests_resolve_to_the_same_job_as_inline_sources():
    store = ContentStore(capacity=1 << 20, ttl=60, max_blob_bytes=1 << 16)
    lib = b"module.exports = (x) => x + 1;"
    pkg = b"exports.name = 'p';"
    main = "module.exports = (x) => require('./lib')(x);"
    for data in (lib, pkg, main.encode()):
        await put(store, data)
    tree = tree_blob({"node_modules/p/index.js": pkg, "main.js": main.encode()})
    await put(store, tree)
    inline = pb.Task(
        id="a",
        source=main,
        input_json="1",
        modules=[
            pb.Module(name="lib.js", source=lib.decode()),
            pb.Module(name="node_modules/p/index.js", source=pkg.decode()),
        ],
    )
    by_digest = pb.Task(
        id="a",
        input_json="1",
        modules=[pb.Module(name="lib.js", digest=digest(lib))],
        tree=digest(tree),
    )
    a = validate(inline, SETTINGS, store=store, tenant="t")
    b = validate(by_digest, SETTINGS, store=store, tenant="t")
    # The tree travels as a unit beside the task's own files (trees.py)...
    assert b.frame.tree_files is not None and "main.js" not in b.frame.modules
    # ...and names the same files with the same texts.
    tree_files = b.frame.tree_files
    assert a.frame.modules == {**b.frame.modules, **tree_files.texts}
    assert a.frame.digests == {**b.frame.digests, **tree_files.digests}
    assert a.frame.digests["lib.js"] == key_of(lib)[0]
    assert a.frame.context.seed == b.frame.context.seed
    assert b.size_bytes < a.size_bytes  # store text is not the task's own bytes


async def test_missing_blobs_are_all_named_and_counted():
    store = ContentStore(capacity=1 << 20, ttl=60, max_blob_bytes=1 << 16)
    have = b"module.exports = 1;"
    await put(store, have)
    task = pb.Task(
        source="module.exports = 0;",
        modules=[
            pb.Module(name="a.js", digest=digest(b"a")),
            pb.Module(name="b.js", digest=digest(have)),
            pb.Module(name="c.js", digest=digest(b"c")),
        ],
    )
    with pytest.raises(MissingBlobs) as info:
        validate(task, SETTINGS, store=store)  # another tenant: "t" uploaded it
    assert info.value.missing == [key_of(b"a"), key_of(have), key_of(b"c")]
    with pytest.raises(MissingBlobs) as info:
        validate(task, SETTINGS, store=store, tenant="t")
    assert info.value.missing == [key_of(b"a"), key_of(b"c")]
    tree = pb.Task(tree=digest(b"no such tree"), entry_name="main.js")
    with pytest.raises(MissingBlobs) as info:
        validate(tree, SETTINGS, store=store, tenant="t")
    assert info.value.missing == [key_of(b"no such tree")]
    assert store.statistics().missing_rejections == 3


@pytest.mark.parametrize(
    ("files", "words"),
    [
        ([("b.js", b"1"), ("a.js", b"2")], "sorted"),
        ([("a.js", b"1"), ("a.js", b"2")], "each name once"),
        ([("../x", b"3"), ("a.js", b"1")], "not a valid module path"),
        ([("big.js", b"x" * 1001)], "max_source_bytes"),
        ([(f"f{i}.js", b"x" * 900) for i in range(4)], "max_tree_bytes"),
    ],
)
async def test_bad_trees_are_invalid_and_name_the_tree(files, words):
    store = ContentStore(capacity=1 << 20, ttl=60, max_blob_bytes=1 << 16)
    for _, data in files:
        await put(store, data)
    entries = [cas_pb2.TreeEntry(name=n, digest=digest(d)) for n, d in files]
    tree = cas_pb2.ModuleTree(files=entries).SerializeToString()
    await put(store, tree)
    task = pb.Task(source="module.exports = 0;", tree=digest(tree))
    with pytest.raises(InvalidTask, match=words) as info:
        validate(task, SETTINGS, store=store, tenant="t")
    assert info.value.field == "task.tree"


async def test_module_shape_errors_name_the_module():
    store = ContentStore(capacity=1 << 20, ttl=60, max_blob_bytes=1 << 16)
    bad = await put(store, b"\xff not text")
    both = pb.Task(
        source="module.exports = 0;",
        modules=[pb.Module(name="a.js", source="1", digest=digest(b"1"))],
    )
    with pytest.raises(InvalidTask, match="both") as info:
        validate(both, SETTINGS, store=store, tenant="t")
    assert info.value.field == "task.modules[0]"
    not_text = pb.Task(
        source="module.exports = 0;",
        modules=[pb.Module(name="a.js", digest=cas_pb2.Digest(hash=bad[0], size_bytes=bad[1]))],
    )
    with pytest.raises(InvalidTask, match="not UTF-8") as info:
        validate(not_text, SETTINGS, store=store, tenant="t")
    assert info.value.field == "task.modules[0]"
    malformed = pb.Task(
        source="x", modules=[pb.Module(name="a.js", digest=cas_pb2.Digest(hash="zz"))]
    )
    with pytest.raises(InvalidTask, match="not a valid digest") as info:
        validate(malformed, SETTINGS, store=store, tenant="t")
    assert info.value.field == "task.modules[0].digest"
    tree = await put(store, tree_blob({"a.js": b"1"}))
    await put(store, b"1")
    twice = pb.Task(
        source="x",
        modules=[pb.Module(name="a.js", source="2")],
        tree=cas_pb2.Digest(hash=tree[0], size_bytes=tree[1]),
    )
    with pytest.raises(InvalidTask, match="given twice") as info:
        validate(twice, SETTINGS, store=store, tenant="t")
    assert info.value.field == "task.tree"
    no_entry = pb.Task(entry_name="main.js", modules=[pb.Module(name="lib.js", source="1")])
    with pytest.raises(InvalidTask, match="no file 'main\\.js'"):
        validate(no_entry, SETTINGS, store=store, tenant="t")
