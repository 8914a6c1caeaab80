"""Getting a module tree's blobs to a replica: only what it lacks, once per replica.

    ModuleTree ──ReplicaBlobs.ensure──▶ known to be there? ──yes──▶ nothing to send
                        │ no: an upload of it in flight? ──yes──▶ wait for that one
                        ▼
        Capabilities (once: the message and blob limits; no content store ─▶ inline)
        FindMissingBlobs(the tree blob and its files)  ─▶  the missing ones
        BatchUpdateBlobs (batches under the message limit) │ WriteBlob (chunks, a blob
                        ▼                                   │ too large for one batch)
        remember: this replica holds the tree
    a task rejected with missing_blobs (evicted since) ──forget──▶ the next ensure asks again

Why per replica and remembered: a repeated call with the same tree must cost nothing
but the task's own small message (issue #15), so the client keeps, per replica, which
trees it knows are complete there; the server's word on a rejection corrects it. Why one
upload in flight per (replica, tree): a batch of a thousand tasks with one 9 MB tree
would otherwise ask and send it a thousand times before the first answer.

A server without a content store (Limits.max_blob_bytes 0: an older server) gets the
tree inline in Task.modules instead, as before; so does a task on a dns:/// replica's
balanced lanes (gRPC picks the backend per call: the blobs could land on another one
than the task). Routed tasks reach such a name's addresses one by one (_addresses.py),
so only an unrouted task with a tree (system_access, cache="skip") goes inline there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from zako_sdk.errors import InvalidTask, ZakoError, map_rpc_error, status_code
from zako_sdk.proto.zako.v1 import cas_pb2
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.trees import Digest, ModuleTree

if TYPE_CHECKING:
    from zako_sdk._replicas import Replica

__all__ = ["BlobRefused", "ReplicaBlobs", "Uploads"]

# Room left in a message for everything but the blobs' bytes (digests, field tags).
MESSAGE_MARGIN = 64 << 10
PER_BLOB_OVERHEAD = 128
MAX_CHUNK_BYTES = 1 << 20  # WriteBlob chunk: well under any message limit
MAX_FIND_DIGESTS = 100_000  # cas.proto's bound per FindMissingBlobs call


@dataclass(frozen=True)
class CasLimits:
    """What a replica's content store takes: its message and blob limits."""

    max_message_bytes: int
    max_blob_bytes: int


class BlobRefused(Exception):
    """The replica will not store a blob (larger than its limit, malformed): a task that
    names it can never run there. `code` is the status the server gave."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def for_task(self, task_id: str) -> InvalidTask:
        return InvalidTask(self.message, task_id=task_id, code=self.code, field="task.tree")


class _NoStore(Exception):
    """The replica has no content store (UNIMPLEMENTED blob RPCs)."""


class ReplicaBlobs:
    """What one replica holds of this client's trees, and the uploads to it."""

    def __init__(
        self,
        replica: Replica,
        metadata: tuple[tuple[str, str], ...],
        call_timeout: float | None,
    ) -> None:
        self._replica = replica
        self._metadata = metadata
        self._timeout = call_timeout
        self._limits: asyncio.Future[CasLimits | None] | None = None
        self._trees: set[str] = set()  # hashes of trees whose blobs all are there
        self._in_flight: dict[str, asyncio.Future[None]] = {}  # tree hash -> its upload
        self._blobs_in_flight: dict[str, asyncio.Future[None]] = {}  # blob hash -> upload
        # What this client sent (tests and benchmarks read them).
        self.find_calls = 0
        self.uploaded_blobs = 0
        self.uploaded_bytes = 0

    async def limits(self) -> CasLimits | None:
        """The replica's limits, asked once (None: it has no content store)."""
        known = self._limits
        if known is None or (known.done() and (known.cancelled() or known.exception())):
            known = self._limits = asyncio.ensure_future(self._ask_limits())
        return await asyncio.shield(known)

    async def _ask_limits(self) -> CasLimits | None:
        try:
            answer = await self._replica.stub.Capabilities(
                pb.CapabilitiesRequest(), timeout=self._timeout, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise map_rpc_error(exc) from exc
        limits = answer.limits
        if limits.max_blob_bytes <= 0:
            return None
        return CasLimits(limits.max_message_bytes or 4 << 20, limits.max_blob_bytes)

    def holds(self, tree: ModuleTree) -> bool:
        return tree.digest.hash in self._trees

    async def ensure(self, tree: ModuleTree) -> bool:
        """Make sure the replica holds `tree`; False if it has no content store.

        Raises ZakoError when a call fails and BlobRefused when a blob is refused.
        """
        key = tree.digest.hash
        if key in self._trees:
            return True
        limits = await self.limits()
        if limits is None:
            return False
        upload = self._in_flight.get(key)
        if upload is None:
            upload = asyncio.ensure_future(self._upload(tree, limits))
            self._in_flight[key] = upload
            upload.add_done_callback(lambda done: self._settled(key, done))
        try:
            # Shielded: one caller giving up must not stop the upload the others wait for.
            await asyncio.shield(upload)
        except _NoStore:
            self._limits = asyncio.get_running_loop().create_future()
            self._limits.set_result(None)
            return False
        return True

    def _settled(self, key: str, upload: asyncio.Future[None]) -> None:
        if self._in_flight.get(key) is upload:
            del self._in_flight[key]
        if not upload.cancelled() and upload.exception() is None:
            self._trees.add(key)

    def forget(self, digests: Iterable[Digest]) -> None:
        """The replica lacks `digests` after all (evicted): ask again on the next ensure.

        Every tree is forgotten, not only those naming the digests: asking is one cheap
        call per tree, and a stale "it is there" would cost a rejected task."""
        if any(True for _ in digests):
            self._trees.clear()

    async def _upload(self, tree: ModuleTree, limits: CasLimits) -> None:
        missing = await self._find_missing(tree, limits)
        # Files before the tree blob that names them: the tree is complete on the server
        # once its last blob is there.
        missing.sort(key=lambda digest: digest.hash == tree.digest.hash)
        waits: list[asyncio.Future[None]] = []
        mine: list[tuple[Digest, bytes]] = []
        for digest in missing:
            data = tree.blob_data(digest)
            if data is None:  # the server named a blob we did not ask about
                continue
            if len(data) > limits.max_blob_bytes:
                raise BlobRefused(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"blob {digest} of the module tree is {len(data)} bytes, over the "
                    f"server's max_blob_bytes of {limits.max_blob_bytes}",
                )
            other = self._blobs_in_flight.get(digest.hash)
            if other is not None:
                waits.append(other)
            else:
                mine.append((digest, data))
        if mine:
            sending = asyncio.ensure_future(self._send(mine, limits))
            for digest, _ in mine:
                self._blobs_in_flight[digest.hash] = sending
            try:
                await sending
            finally:
                for digest, _ in mine:
                    if self._blobs_in_flight.get(digest.hash) is sending:
                        del self._blobs_in_flight[digest.hash]
        for other in waits:
            await asyncio.shield(other)

    async def _find_missing(self, tree: ModuleTree, limits: CasLimits) -> list[Digest]:
        digests = [digest for digest, _ in tree.blobs()]
        per_call = max(1, min(MAX_FIND_DIGESTS, (limits.max_message_bytes - MESSAGE_MARGIN) // 96))
        missing: list[Digest] = []
        for start in range(0, len(digests), per_call):
            request = cas_pb2.FindMissingBlobsRequest(
                blob_digests=[d.to_proto() for d in digests[start : start + per_call]]
            )
            self.find_calls += 1
            answer = await self._call("FindMissingBlobs", request)
            missing += [Digest.from_proto(d) for d in answer.missing_blob_digests]
        return missing

    async def _send(self, blobs: list[tuple[Digest, bytes]], limits: CasLimits) -> None:
        budget = max(1, limits.max_message_bytes - MESSAGE_MARGIN)
        batch: list[tuple[Digest, bytes]] = []
        size = 0
        for digest, data in blobs:
            cost = len(data) + PER_BLOB_OVERHEAD
            if cost > budget:
                await self._write(digest, data, min(MAX_CHUNK_BYTES, budget))
                continue
            if size + cost > budget:
                await self._batch(batch)
                batch, size = [], 0
            batch.append((digest, data))
            size += cost
        if batch:
            await self._batch(batch)

    async def _batch(self, blobs: list[tuple[Digest, bytes]]) -> None:
        request = cas_pb2.BatchUpdateBlobsRequest(
            requests=[
                cas_pb2.BatchUpdateBlobsRequest.Request(digest=d.to_proto(), data=data)
                for d, data in blobs
            ]
        )
        answer = await self._call("BatchUpdateBlobs", request)
        for response in answer.responses:
            if response.status.code:
                raise BlobRefused(
                    status_code(response.status.code),
                    f"the server refused blob {Digest.from_proto(response.digest)}: "
                    f"{response.status.message}",
                )
        self.uploaded_blobs += len(blobs)
        self.uploaded_bytes += sum(len(data) for _, data in blobs)

    async def _write(self, digest: Digest, data: bytes, chunk: int) -> None:
        def chunks() -> Iterable[cas_pb2.WriteBlobRequest]:
            for offset in range(0, len(data), chunk):
                request = cas_pb2.WriteBlobRequest(
                    offset=offset,
                    data=data[offset : offset + chunk],
                    finish_write=offset + chunk >= len(data),
                )
                if offset == 0:
                    request.digest.CopyFrom(digest.to_proto())
                yield request

        try:
            # No deadline: a large blob takes as long as the link needs (keepalive
            # notices a peer that vanished).
            await self._replica.stub.WriteBlob(iter(chunks()), metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._refusal(exc, f"writing blob {digest}") from exc
        self.uploaded_blobs += 1
        self.uploaded_bytes += len(data)

    async def _call(self, method: str, request: object) -> Any:
        try:
            return await getattr(self._replica.stub, method)(
                request, timeout=self._timeout, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise self._refusal(exc, method) from exc

    @staticmethod
    def _refusal(exc: grpc.RpcError, what: str) -> Exception:
        code = exc.code() if callable(getattr(exc, "code", None)) else None
        if code is grpc.StatusCode.UNIMPLEMENTED:
            return _NoStore()
        if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED) and (
            what.startswith("writing")
        ):
            details = exc.details() if callable(getattr(exc, "details", None)) else ""
            return BlobRefused(code, f"{what}: {details}")
        return map_rpc_error(exc)


class Uploads:
    """Each replica's ReplicaBlobs, made on first use (one set per client)."""

    def __init__(self, metadata: tuple[tuple[str, str], ...], call_timeout: float | None) -> None:
        self._metadata = metadata
        self._timeout = call_timeout
        self._replicas: dict[Replica, ReplicaBlobs] = {}

    def of(self, replica: Replica) -> ReplicaBlobs:
        blobs = self._replicas.get(replica)
        if blobs is None:
            blobs = self._replicas[replica] = ReplicaBlobs(replica, self._metadata, self._timeout)
        return blobs

    async def ready(self, replica: Replica, task: pb.Task, tree: ModuleTree | None) -> None:
        """Make `task` runnable on `replica`: its tree's blobs there, or the tree inline
        (see the module docstring). Raises ZakoError / BlobRefused."""
        if tree is None or not task.HasField("tree"):
            return
        if replica.balanced or not await self.of(replica).ensure(tree):
            task.ClearField("tree")
            task.modules.extend(pb.Module(name=n, source=s) for n, s in tree.files.items())

    def forget(self, replica: Replica, digests: Iterable[Digest]) -> None:
        self.of(replica).forget(digests)


def upload_error(exc: BaseException, task_id: str) -> ZakoError | None:
    """The task's outcome for an upload that failed with `exc` (None: not ours to map)."""
    if isinstance(exc, BlobRefused):
        return exc.for_task(task_id)
    if isinstance(exc, ZakoError):
        return exc
    return None
