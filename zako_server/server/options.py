"""Every option of the server, declared once: its name, its parser and its help.

    Option("max_workers", _positive(int), "...") ─▶ --max-workers, ZAKO_MAX_WORKERS,
                                                   the --print-config line, the README table

Its own concern: what the options are and how a text becomes each one's value. The flag,
the environment variable and the `--print-config` line all derive from the one
declaration here, so they cannot drift apart; where a value comes from (config.py) and
the resolved, frozen values (settings.py) are kept apart from it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.I)
_UNITS = {
    "": 1,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
    "t": 10**12,
    "ki": 1 << 10,
    "mi": 1 << 20,
    "gi": 1 << 30,
    "ti": 1 << 40,
}


def parse_size(text: str) -> int:
    """Bytes from '16MiB', '512k', '1048576' (SI and binary suffixes)."""
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"not a size: {text!r} (try 16MiB, 512k or a byte count)")
    number, unit = match.groups()
    unit = (unit or "").lower().removesuffix("b")
    if unit not in _UNITS:
        raise ValueError(f"unknown size unit in {text!r}")
    return int(float(number) * _UNITS[unit])


def parse_bool(text: str) -> bool:
    lowered = str(text).strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise ValueError(f"must be positive, got {text!r}")
        return value

    return parse


def parse_resources(text: str) -> tuple[tuple[str, float], ...]:
    """'gpu=1,licenses=4' -> (('gpu', 1.0), ('licenses', 4.0)); names as in task.resources."""
    pairs = []
    for item in filter(None, (part.strip() for part in str(text).split(","))):
        name, sep, amount = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,62}", name.strip()):
            raise ValueError(f"{item!r} is not NAME=AMOUNT")
        value = float(amount)
        if not value >= 0 or value == float("inf"):
            raise ValueError(f"{item!r}: the amount must be a finite number >= 0")
        pairs.append((name.strip(), value))
    return tuple(pairs)


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = str(text).strip().lower()
        if value not in allowed:
            raise ValueError(f"{text!r} is not one of {', '.join(allowed)}")
        return value

    return parse


ISOLATE_REUSE_MODES = ("tenant", "never")


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be >= 0, got {text!r}")
    return value


def _brief_wait(text: str) -> float:
    """Seconds, 0 to 1: the wait blocks the worker's loop (pings, cancels) that long."""
    value = float(text)
    if not 0 <= value <= 1:
        raise ValueError(f"must be between 0 and 1 second, got {text!r}")
    return value


@dataclass(frozen=True)
class Option:
    """One setting: its parser and help; its default is the `Settings` field default."""

    name: str
    parse: Callable[[str], Any]
    help: str

    @property
    def env(self) -> str:
        return "ZAKO_" + self.name.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: tuple[Option, ...] = (
    Option("listen", str, "address:port to serve gRPC on (port 0 = any)"),
    Option("min_workers", _non_negative_int, "warm V8 workers kept even when idle"),
    Option(
        "max_workers",
        _positive(int),
        "upper bound on V8 worker processes (default: half the effective CPUs, >= 1)",
    ),
    Option(
        "queue_capacity_bytes",
        _positive(parse_size),
        "most bytes of task sources and inputs waiting in the queue",
    ),
    Option(
        "resources",
        parse_resources,
        "capacities of named resources, NAME=AMOUNT,...; also overrides cpu (millicores) "
        "and memory (bytes), which default to the effective CPUs and memory "
        "(flag --resource NAME=AMOUNT may repeat)",
    ),
    Option("default_cpu_millis", _positive(int), "CPU a task requests when it names none"),
    Option(
        "tenant_max_queued",
        _positive(int),
        "most tasks one tenant may have waiting (default: queue_capacity; a tenant never "
        "holds more of the shared queue than is left free either)",
    ),
    Option("tenant_max_running", _positive(int), "most tasks one tenant may have running"),
    Option(
        "aging",
        _positive(float),
        "seconds after which no smaller task may pass a waiting one (backfill bound)",
    ),
    Option(
        "queue_capacity",
        _positive(int),
        "most tasks waiting for a worker (default: max(2 x max_workers, 1024))",
    ),
    Option(
        "worker_prefetch",
        _non_negative_int,
        "tasks a busy worker may hold queued behind a short task it runs, when no worker "
        "is idle and none can start (0: none)",
    ),
    Option(
        "worker_brief_wait",
        _brief_wait,
        "seconds a worker waits on its event loop's own thread for an eval's answer before "
        "awaiting it through the loop: a trivial task's eval answers in well under 1 ms, and "
        "the hand-back through the loop cost it ~65 us (0: every eval through the loop)",
    ),
    Option(
        "worker_pinning",
        parse_bool,
        "pin each worker process to one CPU, spread over the CPUs the server may use, "
        "where those are its own (its CPU mask no wider than its effective CPUs)",
    ),
    Option("idle_timeout", _positive(float), "seconds an idle worker above min lives"),
    Option("default_timeout", _positive(float), "task timeout when a task gives none (s)"),
    Option("min_timeout", _positive(float), "shortest task timeout accepted (s)"),
    Option("max_timeout", _positive(float), "longest task timeout accepted (s)"),
    Option("max_message_bytes", _positive(parse_size), "largest gRPC message"),
    Option("max_source_bytes", _positive(parse_size), "largest module source"),
    Option("max_modules", _non_negative_int, "most files in a task's module tree"),
    Option("max_tree_bytes", _positive(parse_size), "largest module tree (all files, bytes)"),
    Option(
        "transform_workers",
        _non_negative_int,
        "processes of the ESM/TypeScript transform stage (0: a few, by CPU count)",
    ),
    Option("transform_cache_bytes", _positive(parse_size), "transform stage cache size"),
    Option(
        "cas_bytes",
        _positive(parse_size),
        "content-addressed store budget (module blobs; least recently used evicted)",
    ),
    Option("cas_ttl", _positive(float), "seconds an unused blob stays in the store"),
    Option("max_blob_bytes", _positive(parse_size), "largest blob the store accepts"),
    Option("action_cache", parse_bool, "answer repeated hermetic tasks from the action cache"),
    Option("action_cache_bytes", _positive(parse_size), "action cache budget (outcomes, logs)"),
    Option(
        "worker_code_cache_bytes",
        _positive(parse_size),
        "module text one worker keeps by digest (sent over its pipe once)",
    ),
    Option("max_input_bytes", _positive(parse_size), "largest task input JSON"),
    Option("max_result_bytes", _positive(parse_size), "largest task result JSON"),
    Option("max_log_bytes", _positive(parse_size), "log bytes kept per task"),
    Option(
        "max_log_lines",
        _positive(int),
        "log lines kept per task (a line costs an event's worth of memory however short)",
    ),
    Option(
        "stream_outbox_bytes",
        _positive(parse_size),
        "bytes of events a Submit stream may hold for a client that does not read them; "
        "past it the stream's queued tasks wait, then its requests are not read",
    ),
    Option("default_memory", _positive(parse_size), "default V8 heap limit per task"),
    Option("max_memory", _positive(parse_size), "largest V8 heap limit a task may ask"),
    Option("max_tasks_per_stream", _positive(int), "most tasks in flight per stream"),
    Option(
        "allow_system_access",
        parse_bool,
        "let config-context tasks ask for clock, randomness and timers",
    ),
    Option(
        "isolate_reuse",
        _choice(*ISOLATE_REUSE_MODES),
        "tenant: a worker keeps warm V8 isolates and reuses one across tasks of the same "
        "tenant, context kind and hermeticity (Task.fresh_isolate opts out); never: a "
        "fresh isolate for every task",
    ),
    Option(
        "isolate_max_tasks",
        _positive(int),
        "tasks a warm isolate runs before it is recycled for a fresh one",
    ),
    Option(
        "drain_grace",
        _positive(float),
        "on SIGTERM: seconds running tasks get to finish before they are cancelled",
    ),
    Option(
        "cancel_grace",
        _positive(float),
        "seconds a worker gets to stop a cancelled or timed-out task before it is killed",
    ),
    Option("worker_start_timeout", _positive(float), "seconds a new worker has to get ready"),
    Option(
        "worker_heartbeat_interval",
        _positive(float),
        "seconds between heartbeats to each worker (answered idle or busy)",
    ),
    Option(
        "worker_heartbeat_timeout",
        _positive(float),
        "seconds without a heartbeat answer after which a worker is deemed hung and "
        "replaced (its task: WORKER_LOST, or run elsewhere if it never started)",
    ),
    Option(
        "keepalive_time",
        _positive(float),
        "seconds between the server's HTTP/2 keepalive pings to each client connection",
    ),
    Option(
        "keepalive_timeout",
        _positive(float),
        "seconds a client has to answer a keepalive ping before its connection is closed "
        "and its tasks are cancelled",
    ),
    Option(
        "worker_rss_margin",
        _positive(parse_size),
        "resident memory a worker may use beyond its task's heap limit before it is "
        "killed (ArrayBuffers are outside V8's heap limit)",
    ),
    Option(
        "health_listen",
        str,
        "host:port for a plaintext grpc.health.v1-only server (for kubelet probes when the "
        "main port serves TLS); empty: off",
    ),
    Option(
        "metrics_listen",
        str,
        "host:port for Prometheus /metrics over HTTP (empty: off), e.g. 0.0.0.0:9090",
    ),
    Option(
        "tracing",
        parse_bool,
        "OpenTelemetry spans (exporter from OTEL_TRACES_EXPORTER: console or otlp)",
    ),
    Option("tls_cert", str, "PEM certificate chain: serve TLS (with --tls-key)"),
    Option("tls_key", str, "PEM private key of --tls-cert"),
    Option("tls_client_ca", str, "PEM CA bundle: require client certificates (mutual TLS)"),
    Option(
        "auth_tokens",
        str,
        "bearer tokens TOKEN:TENANT:ROLE,... (roles: admin, client); "
        "any token turns authentication on",
    ),
    Option("auth_tokens_file", str, "file of bearer tokens, one 'TOKEN TENANT ROLE' per line"),
    Option("log_level", str, "server log level: debug, info, warning, error"),
    Option("log_format", str, "server log format: text or json (one object per line)"),
)
