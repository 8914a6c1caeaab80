"""The content-addressed store (CAS): module blobs by SHA-256 digest, in memory.

    FindMissingBlobs ─▶ find_missing ──▶ which keys this tenant lacks
    BatchUpdateBlobs ─▶ verify (hash, size) ─▶ put ─▶ LRU + TTL, within capacity_bytes
    WriteBlob ──────────────────────────────────┘
    validation ─▶ text / data ─▶ the job holds the text itself from then on

Why in memory and bounded by bytes: blobs are module sources, read on every task that
names them, and the issue sizes the store by heuristic (10 % of the memory the process
may use, clamped to [4 MiB, 4 GiB]: config.default_cas_bytes). The least recently used
blob is evicted first, and a blob unused for `ttl` seconds is dropped: the sweep is lazy
(every store call drops the expired blobs at the cold end of the LRU order, which is also
the order of last use, so it costs one comparison when nothing expired): no timer.

Tenants: bytes are stored once, however many tenants upload them, but a blob is
*present* for a tenant only once that tenant has uploaded it (and so proved it has the
bytes). Otherwise FindMissingBlobs, or a task naming a digest, would tell a hostile
tenant whether another tenant holds a given file (a private package, a secret config).
Eviction removes the blob for every tenant; the tenant set is counted in its cost.

Module text: workers need `str`, and decoding a 9 MB blob on every task costs
milliseconds, so the first use as text replaces the bytes with the decoded text (the
bytes are never needed again: there is no read RPC, and the text is what hashes to the
digest). What a blob costs against the budget is what it keeps: its bytes or its text's
payload (1, 2 or 4 bytes a character, as CPython stores it), plus a fixed overhead per
blob and per tenant, so a load of tiny blobs cannot exceed the budget either.

Everything runs on the server's event loop (one thread): no locks. Only hashing a large
blob leaves the loop (`verify`, in a thread: hashlib releases the GIL).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from zako_server.server.errors import BlobTooLarge, InvalidBlob
from zako_server.server.settings import Settings

# A blob's key: (lowercase hex SHA-256, size in bytes).
Key = tuple[str, int]
_HASH = re.compile(r"^[0-9a-f]{64}$")
EMPTY_HASH = hashlib.sha256(b"").hexdigest()
# The empty blob is always present (as in REAPI): nothing to upload, nothing to leak.
EMPTY_KEY: Key = (EMPTY_HASH, 0)
# Blobs larger than this are hashed in a thread, so a 9 MB upload (~10-30 ms of SHA-256)
# does not stall every other call on the loop.
THREAD_HASH_BYTES = 1 << 20
# Memory a blob costs beyond its payload: the entry object, its OrderedDict slot and
# key tuple (measured ~250 bytes with sys.getsizeof), and per tenant in its set.
BLOB_OVERHEAD = 256
TENANT_OVERHEAD = 64
_EMPTY_STR_SIZE = sys.getsizeof("")


def check_digest(hash_: str, size: int, field_name: str) -> Key:
    """The key of a well-formed digest; InvalidBlob naming `field_name` otherwise."""
    if not _HASH.match(hash_) or size < 0:
        raise InvalidBlob(
            f"{field_name} is not a valid digest (64 lowercase hex characters of SHA-256 "
            f"and a size >= 0): {hash_!r}/{size}",
            field=field_name,
        )
    return (hash_, size)


def text_cost(text: str) -> int:
    """What CPython keeps for `text` beyond an empty string's header (its payload)."""
    return max(sys.getsizeof(text) - _EMPTY_STR_SIZE, len(text))


def _sha256(data: bytes | bytearray | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


async def sha256_hex(data: bytes) -> str:
    """SHA-256 of `data`, off the loop when it is large."""
    if len(data) > THREAD_HASH_BYTES:
        return await asyncio.to_thread(_sha256, data)
    return _sha256(data)


@dataclass(slots=True)
class _Blob:
    payload: bytes | str  # the bytes as uploaded, or their text once used as a module
    cost: int
    last_used: float
    tenants: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class CasStatistics:
    """A snapshot of the store's figures (CasStats)."""

    blobs: int
    bytes: int
    capacity: int
    evictions: int
    hits: int
    misses: int
    uploads: int
    uploaded_bytes: int
    missing_rejections: int


class ContentStore:
    """Blobs by digest, bounded by `capacity` bytes, least recently used evicted first.

    >>> store = ContentStore(capacity=1 << 20, ttl=60.0, max_blob_bytes=1 << 16)
    >>> key = await store.upload("acme", sha256_of_data, len(data), data)
    >>> store.find_missing("acme", [key])   # []
    >>> store.text("acme", key)             # the data as text, or None if absent
    """

    def __init__(
        self,
        capacity: int,
        ttl: float,
        max_blob_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.ttl = ttl
        self.max_blob_bytes = max_blob_bytes
        self._clock = clock
        self._blobs: OrderedDict[Key, _Blob] = OrderedDict()
        self._bytes = 0
        self.evictions = 0
        self.hits = 0
        self.misses = 0
        self.uploads = 0
        self.uploaded_bytes = 0
        self.missing_rejections = 0
        # Bumped whenever a blob leaves the store (eviction, TTL, `evict`): nothing else
        # can make a blob absent for a tenant, so a caller that looked texts up at one
        # generation knows they are all still present while it has not moved (trees.py).
        self.generation = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> ContentStore:
        return cls(settings.cas_bytes, settings.cas_ttl, settings.max_blob_bytes)

    # -- bookkeeping ------------------------------------------------------------------

    def _sweep(self, now: float) -> None:
        """Drop the blobs unused for `ttl`: they sit at the cold end of the LRU order."""
        horizon = now - self.ttl
        while self._blobs:
            key, blob = next(iter(self._blobs.items()))
            if blob.last_used > horizon:
                return
            self._drop(key)

    def _drop(self, key: Key) -> None:
        blob = self._blobs.pop(key)
        self._bytes -= blob.cost
        self.evictions += 1
        self.generation += 1

    def _make_room(self, keep: Key | None = None) -> None:
        """Evict least recently used blobs until the store is within its capacity."""
        while self._bytes > self.capacity and self._blobs:
            key = next(iter(self._blobs))
            if key == keep and len(self._blobs) == 1:
                return
            if key == keep:  # the blob being stored is the hottest; never first out
                self._blobs.move_to_end(key)
                continue
            self._drop(key)

    def _touch(self, tenant: str, key: Key) -> _Blob | None:
        """The blob if present for `tenant` (refreshed as most recently used)."""
        now = self._clock()
        self._sweep(now)
        blob = self._blobs.get(key)
        if blob is None or tenant not in blob.tenants:
            self.misses += 1
            return None
        self.hits += 1
        blob.last_used = now
        self._blobs.move_to_end(key)
        return blob

    # -- lookups ----------------------------------------------------------------------

    def find_missing(self, tenant: str, keys: Iterable[Key]) -> list[int]:
        """Indexes of the keys that are not present for `tenant` (the empty blob always is).

        A lookup refreshes the blob: a client asks just before it names the blob in a
        task, so the blob should not be the next one out."""
        return [
            index
            for index, key in enumerate(keys)
            if key != EMPTY_KEY and self._touch(tenant, key) is None
        ]

    def has(self, tenant: str, key: Key) -> bool:
        return key == EMPTY_KEY or self._touch(tenant, key) is not None

    def refresh(self, tenant: str, keys: Iterable[Key]) -> None:
        """Mark blobs as just used (those present for `tenant`), as a lookup would: a tree
        resolved from memo (trees.py) keeps its files out of the cold end and the TTL."""
        now = self._clock()
        blobs = self._blobs
        for key in keys:
            blob = blobs.get(key)
            if blob is not None and tenant in blob.tenants:
                blob.last_used = now
                blobs.move_to_end(key)
        self._sweep(now)

    def data(self, tenant: str, key: Key) -> bytes | None:
        """The blob's bytes for `tenant`, or None if absent (for ModuleTree blobs)."""
        if key == EMPTY_KEY:
            return b""
        blob = self._touch(tenant, key)
        if blob is None:
            return None
        payload = blob.payload
        return payload if isinstance(payload, bytes) else payload.encode("utf-8")

    def text(self, tenant: str, key: Key) -> str | None:
        """The blob as UTF-8 text for `tenant`, or None if absent; decoded once and kept
        as text. UnicodeDecodeError when its bytes are not UTF-8."""
        if key == EMPTY_KEY:
            return ""
        blob = self._touch(tenant, key)
        if blob is None:
            return None
        if isinstance(blob.payload, str):
            return blob.payload
        text = blob.payload.decode("utf-8")
        cost = text_cost(text) + BLOB_OVERHEAD + TENANT_OVERHEAD * len(blob.tenants)
        if cost <= self.capacity:  # else keep the bytes: the text would never fit
            self._bytes += cost - blob.cost
            blob.payload, blob.cost = text, cost
            self._make_room(keep=key)
        return text

    # -- uploads ----------------------------------------------------------------------

    def check_size(self, key: Key, field_name: str) -> None:
        """BlobTooLarge when a blob of this size can never be stored here."""
        size = key[1]
        if size > self.max_blob_bytes:
            raise BlobTooLarge(
                f"{field_name}: the blob is {size} bytes; the largest this server stores is "
                f"{self.max_blob_bytes} (Limits.max_blob_bytes)",
                field=field_name,
            )
        if size + BLOB_OVERHEAD + TENANT_OVERHEAD > self.capacity:
            raise BlobTooLarge(
                f"{field_name}: the blob is {size} bytes; the whole store holds "
                f"{self.capacity} (Limits.cas_capacity_bytes)",
                field=field_name,
            )

    @staticmethod
    def check_data(key: Key, data: bytes, actual_hash: str, field_name: str) -> None:
        """InvalidBlob unless `data` (whose SHA-256 is `actual_hash`) matches `key`."""
        if len(data) != key[1]:
            raise InvalidBlob(
                f"{field_name}: the data is {len(data)} bytes, the digest says {key[1]}",
                field=field_name,
            )
        if actual_hash != key[0]:
            raise InvalidBlob(
                f"{field_name}: the data's SHA-256 is {actual_hash}, not the digest's {key[0]}",
                field=field_name,
            )

    async def upload(
        self, tenant: str, hash_: str, size: int, data: bytes, field_name: str = "digest"
    ) -> Key:
        """Verify `data` against its digest (hash AND size), then store it for `tenant`."""
        key = check_digest(hash_, size, field_name)
        self.check_size(key, field_name)
        self.check_data(key, data, await sha256_hex(data), field_name)
        self.put_verified(tenant, key, data)
        return key

    def put_verified(self, tenant: str, key: Key, data: bytes) -> None:
        """Store bytes already checked against `key` (upload, or WriteBlob's own hash)."""
        now = self._clock()
        self._sweep(now)
        self.uploads += 1
        self.uploaded_bytes += key[1]
        if key == EMPTY_KEY:
            return
        blob = self._blobs.get(key)
        if blob is None:
            blob = _Blob(data, len(data) + BLOB_OVERHEAD, now)
            self._blobs[key] = blob
            self._bytes += blob.cost
        if tenant not in blob.tenants:
            blob.tenants.add(tenant)
            blob.cost += TENANT_OVERHEAD
            self._bytes += TENANT_OVERHEAD
        blob.last_used = now
        self._blobs.move_to_end(key)
        self._make_room(keep=key)

    def evict(self, key: Key) -> bool:
        """Drop one blob now (for tests and operators); whether it was held."""
        if key not in self._blobs:
            return False
        self._drop(key)
        return True

    def note_missing_rejection(self) -> None:
        self.missing_rejections += 1

    def statistics(self) -> CasStatistics:
        self._sweep(self._clock())
        return CasStatistics(
            blobs=len(self._blobs),
            bytes=self._bytes,
            capacity=self.capacity,
            evictions=self.evictions,
            hits=self.hits,
            misses=self.misses,
            uploads=self.uploads,
            uploaded_bytes=self.uploaded_bytes,
            missing_rejections=self.missing_rejections,
        )
