"""The content-addressed store through a real server: find missing, upload, run by
digest (and by tree), missing blobs refused precisely, eviction under load, WriteBlob."""

from __future__ import annotations

import asyncio
import hashlib
import json
import urllib.request

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status
from prometheus_client.parser import text_string_to_metric_families

from zako_sdk.proto.zako.v1 import cas_pb2
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc


def digest(data: bytes) -> cas_pb2.Digest:
    return cas_pb2.Digest(hash=hashlib.sha256(data).hexdigest(), size_bytes=len(data))


def tree_of(files: dict[str, bytes]) -> bytes:
    entries = [cas_pb2.TreeEntry(name=n, digest=digest(d)) for n, d in sorted(files.items())]
    return cas_pb2.ModuleTree(files=entries).SerializeToString()


async def upload(stub: pb_grpc.ExecutorStub, blobs: list[bytes], metadata=()) -> None:
    """What a client does: ask what is missing, upload only that, check every status."""
    found = await stub.FindMissingBlobs(
        cas_pb2.FindMissingBlobsRequest(blob_digests=[digest(b) for b in blobs]),
        metadata=metadata,
    )
    by_hash = {hashlib.sha256(b).hexdigest(): b for b in blobs}
    requests = [
        cas_pb2.BatchUpdateBlobsRequest.Request(digest=d, data=by_hash[d.hash])
        for d in found.missing_blob_digests
    ]
    reply = await stub.BatchUpdateBlobs(
        cas_pb2.BatchUpdateBlobsRequest(requests=requests), metadata=metadata
    )
    assert [r.status.code for r in reply.responses] == [code_pb2.OK] * len(requests)


LIB = b"module.exports = (x) => x * 2;"
PKG_JSON = json.dumps({"name": "greet", "main": "lib/g.js"}).encode()
PKG_MAIN = b"exports.greet = (n) => `hi ${n}`;"
MAIN = (
    "const twice = require('./lib'); const { greet } = require('greet');\n"
    "module.exports = (x) => [twice(x), greet(x), Math.random()];"
)


async def test_a_task_by_digest_and_by_tree_runs_as_the_same_task_inline(zako_server):
    files = {
        "lib.js": LIB,
        "node_modules/greet/package.json": PKG_JSON,
        "node_modules/greet/lib/g.js": PKG_MAIN,
    }
    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        inline = pb.Task(
            source=MAIN,
            input_json="21",
            modules=[pb.Module(name=n, source=d.decode()) for n, d in files.items()],
        )
        expected = await stub.Run(pb.RunRequest(task=inline), timeout=60)
        assert json.loads(expected.completed.result.value_json)[:2] == [42, "hi 21"]

        tree = tree_of({**files, "main.js": MAIN.encode()})
        await upload(stub, [*files.values(), MAIN.encode(), tree])
        by_digest = pb.Task(
            input_json="21",
            modules=[pb.Module(name=n, digest=digest(d)) for n, d in files.items()],
            entry_name="main.js",
            source=MAIN,
        )
        by_tree = pb.Task(input_json="21", tree=digest(tree))  # the entry: main.js of the tree
        for task in (by_digest, by_tree):
            reply = await stub.Run(pb.RunRequest(task=task), timeout=60)
            # same value, the same seeded random number included: the seed comes from
            # the files' digests, however they travelled
            assert reply.completed.result.value_json == expected.completed.result.value_json
        stats = await stub.Stats(pb.StatsRequest())
        assert stats.cas.blobs >= 5 and stats.cas.uploads >= 5 and stats.cas.hits > 0
        assert 0 < stats.cas.bytes <= stats.cas.capacity_bytes
        caps = await stub.Capabilities(pb.CapabilitiesRequest())
        assert caps.limits.cas_capacity_bytes == stats.cas.capacity_bytes
        assert caps.limits.max_blob_bytes > 0 and caps.limits.max_tree_bytes > 0


async def test_a_missing_blob_is_refused_naming_it_on_submit_and_on_run(zako_server):
    absent = digest(b"module.exports = 'never uploaded';")
    absent_tree = digest(b"not a tree anyone sent")
    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        before = (await stub.Stats(pb.StatsRequest())).cas.missing_rejections
        task = pb.Task(
            id="needs-blobs",
            source="module.exports = require('./a');",
            modules=[pb.Module(name="a.js", digest=absent)],
            tree=absent_tree,
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Run(pb.RunRequest(task=task), timeout=30)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        status = rpc_status.from_call(info.value)
        failure = error_details_pb2.PreconditionFailure()
        [detail] = [d for d in status.details if d.Is(failure.DESCRIPTOR)]
        detail.Unpack(failure)
        subjects = {(v.type, v.subject) for v in failure.violations}
        assert subjects == {
            ("MISSING", f"blobs/{absent_tree.hash}/{absent_tree.size_bytes}"),
            ("MISSING", f"blobs/{absent.hash}/{absent.size_bytes}"),
        }

        async def requests():
            yield pb.SubmitRequest(task=task)

        events = [e async for e in stub.Submit(requests(), timeout=30)]
        [event] = events
        assert event.task_id == "needs-blobs"
        assert event.rejected.code == code_pb2.FAILED_PRECONDITION
        assert {(d.hash, d.size_bytes) for d in event.rejected.missing_blobs} == {
            (absent_tree.hash, absent_tree.size_bytes),
            (absent.hash, absent.size_bytes),
        }
        after = (await stub.Stats(pb.StatsRequest())).cas.missing_rejections
        assert after == before + 2


async def test_another_tenants_blobs_are_not_revealed(zako_server):
    secret = b"module.exports = 'acme internal';"
    acme, rival = (("x-zako-tenant", "acme"),), (("x-zako-tenant", "rival"),)
    async with grpc.aio.insecure_channel(zako_server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        await upload(stub, [secret], acme)
        request = cas_pb2.FindMissingBlobsRequest(blob_digests=[digest(secret)])
        assert len((await stub.FindMissingBlobs(request, metadata=rival)).missing_blob_digests)
        assert not (await stub.FindMissingBlobs(request, metadata=acme)).missing_blob_digests
        task = pb.Task(
            source="module.exports = require('./s');",
            modules=[pb.Module(name="s.js", digest=digest(secret))],
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Run(pb.RunRequest(task=task), metadata=rival, timeout=30)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        reply = await stub.Run(pb.RunRequest(task=task), metadata=acme, timeout=30)
        assert json.loads(reply.completed.result.value_json) == "acme internal"


async def test_uploads_are_verified_and_bounded(server_factory):
    server = server_factory(max_blob_bytes="1MiB", cas_bytes="4MiB")
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        good = b"module.exports = 1;"
        big = b"x" * ((1 << 20) + 1)
        reply = await stub.BatchUpdateBlobs(
            cas_pb2.BatchUpdateBlobsRequest(
                requests=[
                    cas_pb2.BatchUpdateBlobsRequest.Request(digest=digest(good), data=good),
                    cas_pb2.BatchUpdateBlobsRequest.Request(digest=digest(good), data=b"corrupt"),
                    cas_pb2.BatchUpdateBlobsRequest.Request(digest=digest(big), data=big),
                    cas_pb2.BatchUpdateBlobsRequest.Request(
                        digest=cas_pb2.Digest(hash="nope", size_bytes=1), data=b"x"
                    ),
                ]
            )
        )
        assert [r.status.code for r in reply.responses] == [
            code_pb2.OK,
            code_pb2.INVALID_ARGUMENT,
            code_pb2.RESOURCE_EXHAUSTED,
            code_pb2.INVALID_ARGUMENT,
        ]
        assert "max_blob_bytes" in reply.responses[2].status.message
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.FindMissingBlobs(
                cas_pb2.FindMissingBlobsRequest(
                    blob_digests=[digest(good), cas_pb2.Digest(hash="AB", size_bytes=2)]
                )
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "blob_digests[1]" in info.value.details()
        too_many = cas_pb2.FindMissingBlobsRequest(blob_digests=[digest(good)] * 100_001)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.FindMissingBlobs(too_many, timeout=60)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "100000" in info.value.details()


def chunks(data: bytes, size: int, d: cas_pb2.Digest):
    for offset in range(0, len(data), size):
        yield cas_pb2.WriteBlobRequest(
            digest=d if offset == 0 else None,
            offset=offset,
            data=data[offset : offset + size],
            finish_write=offset + size >= len(data),
        )


async def test_write_blob_takes_a_multi_megabyte_module_in_chunks(server_factory):
    server = server_factory(max_blob_bytes="8MiB", cas_bytes="32MiB", max_message_bytes="4MiB")
    # ~5 MB of real module text, sent in 1 MiB chunks
    body = "".join(f"exports.f{i} = () => {i};\n" for i in range(200_000)).encode()
    module = body + b"exports.n = 200000;\n"
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        reply = await stub.WriteBlob(chunks(module, 1 << 20, digest(module)), timeout=60)
        assert reply.committed_size == len(module) > 4 << 20
        task = pb.Task(
            source="const m = require('./big'); module.exports = () => m.f199999() + m.n;",
            modules=[pb.Module(name="big.js", digest=digest(module))],
        )
        run = await stub.Run(pb.RunRequest(task=task), timeout=60)
        assert json.loads(run.completed.result.value_json) == 399_999

        corrupt = bytearray(module)
        corrupt[3 << 20] ^= 1
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.WriteBlob(chunks(bytes(corrupt), 1 << 20, digest(module)), timeout=60)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "SHA-256" in info.value.details()

        shuffled = list(chunks(module, 1 << 20, digest(module)))
        shuffled[1], shuffled[2] = shuffled[2], shuffled[1]
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.WriteBlob(iter(shuffled), timeout=60)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "offset" in info.value.details()

        huge = cas_pb2.Digest(hash="a" * 64, size_bytes=(8 << 20) + 1)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.WriteBlob(
                iter([cas_pb2.WriteBlobRequest(digest=huge, data=b"x" * 1024)]), timeout=60
            )
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def until(stub: pb_grpc.ExecutorStub, condition) -> None:
    for _ in range(3000):
        if condition(await stub.Stats(pb.StatsRequest())):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the server never reached the state the test waits for")


# Holds the only worker until the test cancels it.
SPIN = "module.exports = () => { for (;;) {} };"


async def test_eviction_under_load_never_runs_a_task_with_a_missing_blob(server_factory):
    server = server_factory(min_workers=1, max_workers=1, cas_bytes="4MiB", max_blob_bytes="1MiB")
    blobs = [
        (f"module.exports = {i}; //" + "x" * (600 << 10)).encode() for i in range(20)
    ]  # 20 x 600 KB: five times what the store holds
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)

        def task_for(i: int) -> pb.Task:
            return pb.Task(
                source="module.exports = () => require('./m');",
                modules=[pb.Module(name="m.js", digest=digest(blobs[i]))],
            )

        # Tasks queued behind a busy worker hold their text: evicting the blobs they
        # named while they wait does not touch them.
        await upload(stub, blobs[:2])
        spin = asyncio.ensure_future(
            stub.Run(
                pb.RunRequest(task=pb.Task(id="spin", source=SPIN, timeout=Duration(seconds=60))),
                timeout=90,
            )
        )
        await until(stub, lambda stats: stats.queue.running == 1)
        # A task sent right after another began may be queued behind it on its worker
        # (prefetch, pool.py); once that one has run a while, the next waits in line.
        await asyncio.sleep(0.1)
        queued = [
            asyncio.ensure_future(stub.Run(pb.RunRequest(task=task_for(i)), timeout=60))
            for i in (0, 1)
        ]
        await until(stub, lambda stats: stats.queue.depth == 2)
        for i in range(2, 20):  # pushes 0 and 1 out
            await upload(stub, [blobs[i]])
            stats = (await stub.Stats(pb.StatsRequest())).cas
            assert stats.bytes <= stats.capacity_bytes
        missing = await stub.FindMissingBlobs(
            cas_pb2.FindMissingBlobsRequest(blob_digests=[digest(blobs[0]), digest(blobs[1])])
        )
        assert len(missing.missing_blob_digests) == 2
        assert (await stub.Stats(pb.StatsRequest())).queue.depth == 2  # still waiting
        await stub.Cancel(pb.CancelRequest(task_id="spin"))
        assert (await spin).WhichOneof("outcome") == "cancelled"
        values = [json.loads((await q).completed.result.value_json) for q in queued]
        assert values == [0, 1]

        # New tasks naming evicted blobs are refused naming them, never run.
        stats = (await stub.Stats(pb.StatsRequest())).cas
        assert stats.evictions >= 13
        found = await stub.FindMissingBlobs(
            cas_pb2.FindMissingBlobsRequest(blob_digests=[digest(b) for b in blobs])
        )
        gone = {d.hash for d in found.missing_blob_digests}
        assert len(gone) >= 13
        for i, data in enumerate(blobs):
            if digest(data).hash not in gone:
                continue
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Run(pb.RunRequest(task=task_for(i)), timeout=30)
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            status = rpc_status.from_call(info.value)
            failure = error_details_pb2.PreconditionFailure()
            status.details[0].Unpack(failure)
            assert failure.violations[0].subject == f"blobs/{digest(data).hash}/{len(data)}"
            # re-upload, and it runs with the right module
            await upload(stub, [data])
            reply = await stub.Run(pb.RunRequest(task=task_for(i)), timeout=30)
            assert json.loads(reply.completed.result.value_json) == i
            stats = (await stub.Stats(pb.StatsRequest())).cas
            assert stats.bytes <= stats.capacity_bytes


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_prometheus_shows_the_store_as_stats_does(server_factory):
    server = server_factory(metrics_listen="127.0.0.1:0")
    blob = b"module.exports = 'counted';"
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        await stub.WriteBlob(chunks(blob, 10, digest(blob)), timeout=30)
        await upload(stub, [b"exports.a = 1;"])
        stats = (await stub.Stats(pb.StatsRequest())).cas
    samples = await asyncio.to_thread(scrape, server.server.metrics.port)
    assert stats.uploads == 2 and stats.blobs == 2
    assert samples[("zako_cas_uploads_total", ())] == stats.uploads
    assert samples[("zako_cas_uploaded_bytes_total", ())] == stats.uploaded_bytes
    assert samples[("zako_cas_blobs", ())] == stats.blobs
    assert samples[("zako_cas_bytes", ())] == stats.bytes
    assert samples[("zako_cas_capacity_bytes", ())] == stats.capacity_bytes
    assert samples[("zako_cas_misses_total", ())] == stats.misses == 1
    assert samples[("zako_rpc_requests_total", (("code", "OK"), ("method", "WriteBlob")))] == 1
