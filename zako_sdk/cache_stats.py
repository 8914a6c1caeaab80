"""What a server reports about its caches (issue #15): the content-addressed store, the
action cache and the workers' code cache, as parts of `zako_sdk.stats.Stats`.

    StatsResponse.cas           ──▶ CasStats
    StatsResponse.action_cache  ──▶ ActionCacheStats
    StatsResponse.code_cache    ──▶ CodeCacheStats

Frozen dataclasses with the proto's field names (cas.proto documents each), plus the
hit rates derived from them, which `Stats.to_dict()` and `zako stats` show.
"""

from __future__ import annotations

from dataclasses import dataclass

from zako_sdk.proto.zako.v1 import cas_pb2

__all__ = ["ActionCacheStats", "CasStats", "CodeCacheStats"]


def _rate(hits: int, total: int) -> float:
    return hits / total if total else 0.0


@dataclass(frozen=True)
class CasStats:
    """The content-addressed store of module blobs (issue #15); sizes in bytes.

    `hit_rate` is the share of blob lookups (FindMissingBlobs, and the digests tasks
    name) that found the blob: low with many uploads means clients send new trees, low
    with many evictions means the store is too small for its working set.
    """

    blobs: int = 0
    bytes: int = 0
    capacity_bytes: int = 0
    evictions: int = 0
    hits: int = 0
    misses: int = 0
    uploads: int = 0
    uploaded_bytes: int = 0
    missing_rejections: int = 0

    @classmethod
    def from_proto(cls, c: cas_pb2.CasStats) -> CasStats:
        return cls(
            c.blobs,
            c.bytes,
            c.capacity_bytes,
            c.evictions,
            c.hits,
            c.misses,
            c.uploads,
            c.uploaded_bytes,
            c.missing_rejections,
        )

    @property
    def hit_rate(self) -> float:
        return _rate(self.hits, self.hits + self.misses)


@dataclass(frozen=True)
class ActionCacheStats:
    """The cache of hermetic tasks' outcomes.

    `hit_rate` counts both ways a cacheable task was answered without running: from the
    cache (`hits`) and by joining an identical task already running (`joins`).
    """

    enabled: bool = False
    entries: int = 0
    bytes: int = 0
    capacity_bytes: int = 0
    hits: int = 0
    misses: int = 0
    joins: int = 0
    stores: int = 0
    evictions: int = 0

    @classmethod
    def from_proto(cls, a: cas_pb2.ActionCacheStats) -> ActionCacheStats:
        return cls(
            a.enabled,
            a.entries,
            a.bytes,
            a.capacity_bytes,
            a.hits,
            a.misses,
            a.joins,
            a.stores,
            a.evictions,
        )

    @property
    def hit_rate(self) -> float:
        return _rate(self.hits + self.joins, self.hits + self.joins + self.misses)


@dataclass(frozen=True)
class CodeCacheStats:
    """What the workers keep of the modules they ran: sources by digest, compiled code."""

    source_hits: int = 0
    source_misses: int = 0
    source_bytes_sent: int = 0
    compiled_hits: int = 0
    compiled_misses: int = 0

    @classmethod
    def from_proto(cls, c: cas_pb2.CodeCacheStats) -> CodeCacheStats:
        return cls(
            c.source_hits, c.source_misses, c.source_bytes_sent, c.compiled_hits, c.compiled_misses
        )

    @property
    def source_hit_rate(self) -> float:
        return _rate(self.source_hits, self.source_hits + self.source_misses)

    @property
    def compiled_hit_rate(self) -> float:
        return _rate(self.compiled_hits, self.compiled_hits + self.compiled_misses)
