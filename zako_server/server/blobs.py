"""The three blob RPCs of zako.v1.Executor, on top of the content-addressed store.

    FindMissingBlobs ─▶ check digests ─▶ store.find_missing(tenant) ─▶ the ones it lacks
    BatchUpdateBlobs ─▶ per blob: check digest, size ─▶ hash (a thread if large) ─▶ put
    WriteBlob chunks ─▶ first: digest, size bound ─▶ in order, hashed as they come ─▶
                        finish_write: size and hash checked ─▶ put

Each handler takes the caller's tenant (service.py identifies it, as for every RPC) and
raises the server's errors (InvalidBlob, BlobTooLarge); service.py turns them into
statuses. BatchUpdateBlobs answers each blob on its own (a google.rpc.Status each), as
REAPI does, so one bad blob does not cost the client the others.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

from google.rpc import code_pb2, status_pb2

from zako_sdk.proto.zako.v1 import cas_pb2
from zako_server.server.cas import (
    THREAD_HASH_BYTES,
    ContentStore,
    Key,
    check_digest,
)
from zako_server.server.decoding import Refused
from zako_server.server.errors import BlobRejection, InvalidBlob

# FindMissingBlobs' bound (cas.proto): 100,000 digests are ~8 MB of request.
MAX_FIND_DIGESTS = 100_000


def _hash_all(blobs: list[bytes]) -> list[str]:
    return [hashlib.sha256(data).hexdigest() for data in blobs]


class Blobs:
    """Answers the blob RPCs for one server's store."""

    def __init__(self, store: ContentStore) -> None:
        self.store = store

    def find_missing(
        self, tenant: str, request: cas_pb2.FindMissingBlobsRequest
    ) -> cas_pb2.FindMissingBlobsResponse:
        digests = request.blob_digests
        if len(digests) > MAX_FIND_DIGESTS:
            raise InvalidBlob(
                f"blob_digests has {len(digests)} digests; at most {MAX_FIND_DIGESTS} per call",
                field="blob_digests",
            )
        keys = [
            check_digest(d.hash, d.size_bytes, f"blob_digests[{i}]") for i, d in enumerate(digests)
        ]
        missing = self.store.find_missing(tenant, keys)
        return cas_pb2.FindMissingBlobsResponse(missing_blob_digests=[digests[i] for i in missing])

    async def batch_update(
        self, tenant: str, request: cas_pb2.BatchUpdateBlobsRequest
    ) -> cas_pb2.BatchUpdateBlobsResponse:
        """Check every blob, hash the acceptable ones (in one thread call when there are
        many bytes: a 64 MB batch would hold the loop ~100 ms), store those that match."""
        store = self.store
        outcomes: list[status_pb2.Status | None] = []
        keys: list[Key | None] = []
        for index, blob in enumerate(request.requests):
            field = f"requests[{index}].digest"
            try:
                key = check_digest(blob.digest.hash, blob.digest.size_bytes, field)
                store.check_size(key, field)
                if len(blob.data) != key[1]:
                    raise InvalidBlob(
                        f"{field}: the data is {len(blob.data)} bytes, the digest says {key[1]}",
                        field=field,
                    )
            except BlobRejection as exc:
                outcomes.append(_status(exc))
                keys.append(None)
                continue
            outcomes.append(None)
            keys.append(key)
        datas = [blob.data for blob, ok in zip(request.requests, keys, strict=True) if ok]
        if sum(len(data) for data in datas) > THREAD_HASH_BYTES:
            hashes = iter(await asyncio.to_thread(_hash_all, datas))
        else:
            hashes = iter(_hash_all(datas))
        response = cas_pb2.BatchUpdateBlobsResponse()
        for index, (blob, checked, outcome) in enumerate(
            zip(request.requests, keys, outcomes, strict=True)
        ):
            if checked is not None:
                try:
                    field = f"requests[{index}].digest"
                    store.check_data(checked, blob.data, next(hashes), field)
                    store.put_verified(tenant, checked, blob.data)
                    outcome = status_pb2.Status(code=code_pb2.OK)
                except BlobRejection as exc:
                    outcome = _status(exc)
            response.responses.add(digest=blob.digest, status=outcome)
        return response

    async def write(
        self,
        tenant: str,
        requests: AsyncIterator[cas_pb2.WriteBlobRequest | Refused],
    ) -> cas_pb2.WriteBlobResponse:
        """Receive one blob in chunks. Its size is bounded by the digest in the first
        chunk (checked against max_blob_bytes before any data is kept), so nothing is
        ever buffered past the digest's size; chunks are hashed as they arrive."""
        key: Key | None = None
        hasher = hashlib.sha256()
        chunks: list[bytes] = []
        received = 0
        finished = False
        async for request in requests:
            if isinstance(request, Refused):
                raise request.error
            if key is None:
                if not request.HasField("digest"):
                    raise InvalidBlob(
                        "the first WriteBlob chunk must carry the blob's digest", field="digest"
                    )
                key = check_digest(request.digest.hash, request.digest.size_bytes, "digest")
                self.store.check_size(key, "digest")
            if request.offset != received:
                raise InvalidBlob(
                    f"a chunk starts at offset {request.offset}; the next byte is {received} "
                    "(chunks come in order, without gaps)",
                    field="offset",
                )
            received += len(request.data)
            if received > key[1]:
                raise InvalidBlob(
                    f"the chunks carry more than the digest's {key[1]} bytes", field="data"
                )
            if len(request.data) > THREAD_HASH_BYTES:
                await asyncio.to_thread(hasher.update, request.data)
            else:
                hasher.update(request.data)
            chunks.append(request.data)
            if request.finish_write:
                finished = True
                break
        if key is None or not finished:
            raise InvalidBlob(
                "the WriteBlob stream ended before a chunk with finish_write", field="finish_write"
            )
        data = b"".join(chunks)
        del chunks
        self.store.check_data(key, data, hasher.hexdigest(), "digest")
        self.store.put_verified(tenant, key, data)
        return cas_pb2.WriteBlobResponse(committed_size=key[1])


def _status(exc: BlobRejection) -> status_pb2.Status:
    return status_pb2.Status(code=code_pb2.Code.Value(exc.code), message=exc.message)
