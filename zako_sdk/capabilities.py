"""What a server accepts: Capabilities, so a client can check a task before sending it.

    CapabilitiesResponse ──Capabilities.from_proto─▶ Capabilities (limits, kinds, …)

A frozen dataclass like those of `zako_sdk.stats`, with the proto's field names; a
Duration is float seconds and a ContextKind the short name `run(context=…)` takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from zako_sdk.models import CONTEXT_KINDS, _seconds
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.stats import JsonView, VersionInfo

__all__ = ["Capabilities", "Limits", "PriorityRange"]


@dataclass(frozen=True)
class Limits:
    """The bounds the server enforces on a task; sizes in bytes, timeouts in seconds."""

    max_message_bytes: int = 0
    max_source_bytes: int = 0
    max_modules: int = 0
    max_input_bytes: int = 0
    max_result_bytes: int = 0
    max_log_bytes: int = 0
    min_timeout: float = 0.0
    default_timeout: float = 0.0
    max_timeout: float = 0.0
    default_memory_bytes: int = 0
    max_memory_bytes: int = 0
    max_tasks_per_stream: int = 0
    max_tree_bytes: int = 0
    max_blob_bytes: int = 0
    cas_capacity_bytes: int = 0

    @classmethod
    def from_proto(cls, m: pb.Limits) -> Limits:
        return cls(
            m.max_message_bytes,
            m.max_source_bytes,
            m.max_modules,
            m.max_input_bytes,
            m.max_result_bytes,
            m.max_log_bytes,
            _seconds(m.min_timeout),
            _seconds(m.default_timeout),
            _seconds(m.max_timeout),
            m.default_memory_bytes,
            m.max_memory_bytes,
            m.max_tasks_per_stream,
            m.max_tree_bytes,
            m.max_blob_bytes,
            m.cas_capacity_bytes,
        )


@dataclass(frozen=True)
class PriorityRange:
    """Accepted `priority` values, inclusive; lower runs sooner."""

    min: int = 0
    max: int = 0


_CONTEXT_NAME_OF = {kind: name for name, kind in CONTEXT_KINDS.items()}


def _context_name(kind: int) -> str:
    # A kind newer than this SDK still shows, by its wire name.
    return _CONTEXT_NAME_OF.get(kind) or f"CONTEXT_KIND_{kind}"


@dataclass(frozen=True)
class Capabilities(JsonView):
    """What a server accepts, so a client can check a task before sending it.

        caps = client.capabilities()
        caps.limits.max_timeout, caps.context_kinds   # 300.0, ("package", "build", …)

    `context_kinds` are the names `run(context=…)` takes; `isolate_reuse` says whether
    tasks of one tenant share warm isolates (`fresh_isolate=True` opts out per task);
    `action_cache` whether repeated hermetic tasks are answered from the server's cache
    (`limits.max_blob_bytes` is 0 on a server without a content store).
    """

    limits: Limits = field(default_factory=Limits)
    context_kinds: tuple[str, ...] = ()
    priority: PriorityRange = field(default_factory=PriorityRange)
    builtin_modules: tuple[str, ...] = ()
    system_access_allowed: bool = False
    versions: VersionInfo = field(default_factory=VersionInfo)
    resource_capacity: Mapping[str, float] = field(default_factory=dict)
    isolate_reuse: bool = False
    action_cache: bool = False

    @classmethod
    def from_proto(cls, c: pb.CapabilitiesResponse) -> Capabilities:
        return cls(
            Limits.from_proto(c.limits),
            tuple(_context_name(kind) for kind in c.context_kinds),
            PriorityRange(c.priority.min, c.priority.max),
            tuple(c.builtin_modules),
            c.system_access_allowed,
            VersionInfo.from_proto(c.versions),
            dict(c.resource_capacity),
            c.isolate_reuse,
            c.action_cache,
        )
