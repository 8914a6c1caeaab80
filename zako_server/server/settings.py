"""Settings: every knob of the server, resolved and frozen; the one object passed down.

Its own concern: the values themselves, checked together (`__post_init__`), and what
parts derive from them (admission's capacities, the --print-config rows). Where each
value comes from (flags > env `ZAKO_*` > heuristics/defaults) is config.py's; what the
options are, options.py's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zako_server.server.heuristics import Machine
from zako_server.server.options import ISOLATE_REUSE_MODES, OPTIONS


@dataclass(frozen=True)
class Settings:
    """Every knob of the server, resolved. `sources` says where each value came from."""

    listen: str = "127.0.0.1:50051"
    min_workers: int = 1
    max_workers: int = 1
    queue_capacity: int = 1024
    queue_capacity_bytes: int = 256 << 20
    resources: tuple[tuple[str, float], ...] = ()
    default_cpu_millis: int = 1000
    tenant_max_queued: int = 1024  # follows queue_capacity unless set
    tenant_max_running: int = 1_000_000
    aging: float = 30.0
    idle_timeout: float = 60.0
    default_timeout: float = 30.0
    min_timeout: float = 0.001
    max_timeout: float = 600.0
    max_message_bytes: int = 64 << 20
    max_source_bytes: int = 16 << 20  # typescript.js alone is ~9 MB
    # Package trees are many small files (lodash alone is ~1,050): the limits that
    # matter are bytes (max_tree_bytes, max_source_bytes); the count is a sanity bound.
    max_modules: int = 100_000
    max_tree_bytes: int = 48 << 20
    transform_workers: int = 0
    transform_cache_bytes: int = 256 << 20
    cas_bytes: int = 64 << 20  # follows the machine unless set (10 % of memory)
    cas_ttl: float = 3600.0
    max_blob_bytes: int = 16 << 20  # as max_source_bytes: one file, or one ModuleTree
    action_cache: bool = True
    action_cache_bytes: int = 64 << 20
    worker_code_cache_bytes: int = 128 << 20
    worker_prefetch: int = 1
    worker_pinning: bool = True
    # How long a worker's loop waits on its own thread for an eval's answer before it
    # awaits it (worker/evaluation.py); 0 awaits every eval through the loop.
    worker_brief_wait: float = 0.002
    max_input_bytes: int = 16 << 20
    max_result_bytes: int = 16 << 20
    max_log_bytes: int = 1 << 20
    max_log_lines: int = 10_000
    stream_outbox_bytes: int = 16 << 20
    default_memory: int = 256 << 20
    max_memory: int = 2 << 30
    max_tasks_per_stream: int = 10_000
    allow_system_access: bool = True
    isolate_reuse: str = "tenant"
    isolate_max_tasks: int = 500
    drain_grace: float = 10.0
    cancel_grace: float = 1.0
    worker_start_timeout: float = 30.0
    worker_heartbeat_interval: float = 2.0
    worker_heartbeat_timeout: float = 10.0
    keepalive_time: float = 10.0
    keepalive_timeout: float = 5.0
    worker_rss_margin: int = 256 << 20
    health_listen: str = ""
    metrics_listen: str = ""
    tracing: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    auth_tokens: str = field(default="", repr=False)
    auth_tokens_file: str = ""
    log_level: str = "info"
    log_format: str = "text"
    machine: Machine | None = None
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        problems = []
        if self.min_workers > self.max_workers:
            problems.append(f"min_workers ({self.min_workers}) > max_workers ({self.max_workers})")
        if not self.min_timeout <= self.default_timeout <= self.max_timeout:
            problems.append("need min_timeout <= default_timeout <= max_timeout")
        if self.default_memory > self.max_memory:
            problems.append("default_memory > max_memory")
        if self.log_level.lower() not in {"debug", "info", "warning", "error"}:
            problems.append(f"log_level {self.log_level!r} is not debug/info/warning/error")
        if bool(self.tls_cert) != bool(self.tls_key):
            problems.append("tls_cert and tls_key go together")
        if self.tls_client_ca and not self.tls_cert:
            problems.append("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
        if self.isolate_reuse not in ISOLATE_REUSE_MODES:
            problems.append(f"isolate_reuse {self.isolate_reuse!r} is not tenant or never")
        if self.isolate_max_tasks < 1:
            problems.append("isolate_max_tasks must be >= 1")
        if self.log_format not in {"text", "json"}:
            problems.append(f"log_format {self.log_format!r} is not text or json")
        if ":" not in self.listen:
            problems.append(f"listen {self.listen!r} is not host:port")
        if self.worker_heartbeat_timeout <= self.worker_heartbeat_interval:
            # Each heartbeat judges the answer to the one before it: a timeout within
            # one interval would find every healthy worker silent and kill it.
            problems.append("worker_heartbeat_timeout must exceed worker_heartbeat_interval")
        if self.max_blob_bytes > self.cas_bytes:
            problems.append(
                f"max_blob_bytes ({self.max_blob_bytes}) > cas_bytes ({self.cas_bytes}): "
                "such a blob could never be stored"
            )
        if problems:
            raise ValueError("invalid settings: " + "; ".join(problems))

    def capacities(self) -> dict[str, float]:
        """What admission hands out: cpu (millicores), memory (bytes), workers, extras.
        (Beyond "workers", admission may grant the places a busy worker can queue right
        now: pool.spare_slots, for prefetch.)"""
        machine = self.machine
        capacities = {
            "cpu": (machine.cpus if machine else 1.0) * 1000.0,
            "memory": float(machine.memory_bytes if machine else 1 << 30),
            "workers": float(self.max_workers),
        }
        capacities.update(dict(self.resources))
        return capacities

    def replace(self, **changes: Any) -> Settings:
        """A copy with some values changed (tests use it to shrink limits)."""
        return dataclasses.replace(self, **changes)

    def describe(self) -> list[tuple[str, str, str]]:
        """(name, value, source) for every option, for --print-config."""
        rows = []
        for option in OPTIONS:
            value = getattr(self, option.name)
            shown = "'***'" if option.name == "auth_tokens" and value else repr(value)
            rows.append((option.name, shown, self.sources.get(option.name, "default")))
        if self.machine is not None:
            rows.append(("(effective cpus)", f"{self.machine.cpus:g}", self.machine.cpus_source))
            rows.append(
                ("(effective memory)", str(self.machine.memory_bytes), self.machine.memory_source)
            )
        return rows
