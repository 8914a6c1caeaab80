"""ReplicaBlobs' decisions against a stand-in stub: what it asks, what it sends, in what
messages, and how often (the loopback tests in test_cas_uploads.py use a real server)."""

from __future__ import annotations

import asyncio
import collections
import hashlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
import pytest

from zako_sdk._uploads import BlobRefused, ReplicaBlobs, Uploads
from zako_sdk.proto.zako.v1 import cas_pb2
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.trees import Digest, ModuleTree

MESSAGE = 256 << 10


class Unimplemented(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNIMPLEMENTED

    def details(self) -> str:
        return "no such method"


class FakeStub:
    """Just enough of a server: a dict of blobs, the limits, and a record of the calls."""

    def __init__(self, *, max_blob: int = 8 << 20, store: bool = True) -> None:
        self.blobs: dict[str, bytes] = {}
        self.calls: collections.Counter[str] = collections.Counter()
        self.max_blob = max_blob
        self.has_store = store
        self.gate = asyncio.Event()
        self.gate.set()

    async def Capabilities(self, request: Any, **_: Any) -> pb.CapabilitiesResponse:
        self.calls["Capabilities"] += 1
        blob = self.max_blob if self.has_store else 0
        return pb.CapabilitiesResponse(
            limits=pb.Limits(max_message_bytes=MESSAGE, max_blob_bytes=blob)
        )

    async def FindMissingBlobs(
        self, request: cas_pb2.FindMissingBlobsRequest, **_: Any
    ) -> cas_pb2.FindMissingBlobsResponse:
        self.calls["FindMissingBlobs"] += 1
        await self.gate.wait()
        return cas_pb2.FindMissingBlobsResponse(
            missing_blob_digests=[d for d in request.blob_digests if d.hash not in self.blobs]
        )

    async def BatchUpdateBlobs(
        self, request: cas_pb2.BatchUpdateBlobsRequest, **_: Any
    ) -> cas_pb2.BatchUpdateBlobsResponse:
        self.calls["BatchUpdateBlobs"] += 1
        assert request.ByteSize() <= MESSAGE
        for item in request.requests:
            assert hashlib.sha256(item.data).hexdigest() == item.digest.hash
            self.blobs[item.digest.hash] = item.data
        return cas_pb2.BatchUpdateBlobsResponse(
            responses=[
                cas_pb2.BatchUpdateBlobsResponse.Response(digest=item.digest)
                for item in request.requests
            ]
        )

    async def WriteBlob(
        self, chunks: Iterable[cas_pb2.WriteBlobRequest] | AsyncIterator[Any], **_: Any
    ) -> cas_pb2.WriteBlobResponse:
        self.calls["WriteBlob"] += 1
        parts = list(chunks)  # type: ignore[arg-type]
        assert parts[-1].finish_write and all(p.ByteSize() <= MESSAGE for p in parts)
        data = b"".join(p.data for p in parts)
        assert [p.offset for p in parts] == [
            sum(len(q.data) for q in parts[:i]) for i in range(len(parts))
        ]
        assert hashlib.sha256(data).hexdigest() == parts[0].digest.hash
        self.blobs[parts[0].digest.hash] = data
        return cas_pb2.WriteBlobResponse(committed_size=len(data))


class FakeReplica:
    def __init__(self, stub: FakeStub, balanced: bool = False) -> None:
        self.stub = stub
        self.balanced = balanced
        self.target = "fake:1"


def blobs_of(stub: FakeStub) -> ReplicaBlobs:
    return ReplicaBlobs(FakeReplica(stub), (), None)  # type: ignore[arg-type]


def many_files(n: int, size: int) -> ModuleTree:
    return ModuleTree({f"lib/f{i}.js": f"// {i}\n" + "x" * size for i in range(n)})


async def test_uploads_only_what_is_missing_in_batches_under_the_message_limit():
    stub = FakeStub()
    tree = many_files(40, 20_000)  # ~800 KB: several batches of at most 256 KiB
    stub.blobs[tree.entries["lib/f0.js"].hash] = b"already there"
    blobs = blobs_of(stub)
    assert await blobs.ensure(tree)
    assert stub.calls["FindMissingBlobs"] == 1 and stub.calls["BatchUpdateBlobs"] >= 4
    assert blobs.uploaded_blobs == 40  # 39 files and the tree blob
    assert set(stub.blobs) == {d.hash for d, _ in tree.blobs()}
    # Known complete: the next call asks nothing.
    assert await blobs.ensure(tree) and stub.calls["FindMissingBlobs"] == 1


async def test_a_blob_too_large_for_one_message_goes_through_write_blob_in_chunks():
    stub = FakeStub()
    tree = ModuleTree({"big.js": "y" * (700 << 10), "small.js": "1"})
    assert await blobs_of(stub).ensure(tree)
    assert stub.calls["WriteBlob"] == 1 and stub.calls["BatchUpdateBlobs"] == 1
    assert stub.blobs[tree.entries["big.js"].hash] == b"y" * (700 << 10)


async def test_concurrent_calls_with_one_tree_share_one_upload():
    stub = FakeStub()
    stub.gate.clear()
    blobs = blobs_of(stub)
    tree = many_files(5, 100)
    waiting = [asyncio.ensure_future(blobs.ensure(tree)) for _ in range(50)]
    await asyncio.sleep(0.01)
    stub.gate.set()
    assert all(await asyncio.gather(*waiting))
    assert stub.calls["FindMissingBlobs"] == 1 and stub.calls["BatchUpdateBlobs"] == 1
    assert stub.calls["Capabilities"] == 1


async def test_forgetting_after_an_eviction_asks_again_and_resends_only_that():
    stub = FakeStub()
    blobs = blobs_of(stub)
    tree = many_files(3, 100)
    await blobs.ensure(tree)
    evicted = tree.entries["lib/f1.js"]
    del stub.blobs[evicted.hash]
    blobs.forget([evicted])
    before = blobs.uploaded_blobs
    await blobs.ensure(tree)
    assert stub.calls["FindMissingBlobs"] == 2 and blobs.uploaded_blobs == before + 1


async def test_a_blob_over_the_servers_limit_is_refused_before_sending():
    stub = FakeStub(max_blob=1000)
    with pytest.raises(BlobRefused, match="max_blob_bytes") as info:
        await blobs_of(stub).ensure(ModuleTree({"big.js": "z" * 2000}))
    assert info.value.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert info.value.for_task("t").field == "task.tree"
    assert stub.calls["BatchUpdateBlobs"] == 0 and stub.calls["WriteBlob"] == 0


async def test_a_server_without_a_store_gets_the_tree_inline():
    stub = FakeStub(store=False)
    tree = many_files(2, 10)
    task = pb.Task(id="t", source="1")
    task.tree.CopyFrom(tree.digest.to_proto())
    await Uploads((), None).ready(FakeReplica(stub), task, tree)  # type: ignore[arg-type]
    assert not task.HasField("tree")
    assert {m.name: m.source for m in task.modules} == dict(tree.files)
    assert stub.calls["FindMissingBlobs"] == 0


async def test_unimplemented_blob_rpcs_mean_no_store():
    stub = FakeStub()

    async def unimplemented(*_: Any, **__: Any) -> Any:
        raise Unimplemented()

    stub.FindMissingBlobs = unimplemented  # type: ignore[method-assign]
    blobs = blobs_of(stub)
    assert not await blobs.ensure(many_files(1, 1))
    assert not await blobs.ensure(many_files(2, 1))  # remembered: not asked again


def test_digest_spelling():
    digest = Digest.of(b"abc")
    assert str(digest) == f"{hashlib.sha256(b'abc').hexdigest()}/3"
    assert Digest.from_proto(digest.to_proto()) == digest
