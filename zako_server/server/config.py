"""Settings: built once at start-up (flags > env `ZAKO_*` > heuristics/defaults), then frozen.

Every option is declared once in `OPTIONS`; the flag, the environment variable and the
`--print-config` line all derive from that one declaration, so they cannot drift apart.
Nothing after start-up reads the environment: the frozen `Settings` is passed down and
each part takes what it needs.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from zako_server.server.heuristics import (
    Machine,
    default_cas_bytes,
    default_max_workers,
    default_queue_capacity,
    probe_machine,
)

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


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Settings)}
_HEURISTIC = {"max_workers", "queue_capacity", "tenant_max_queued", "cas_bytes"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare one flag per option; values stay strings until `build_settings` parses them."""
    for option in OPTIONS:
        default = _DEFAULTS[option.name]
        shown = "from the machine" if option.name in _HEURISTIC else repr(default)
        parser.add_argument(
            option.flag,
            dest=option.name,
            default=None,
            metavar="VALUE",
            help=f"{option.help} [env {option.env}; default {shown}]",
        )


def build_settings(
    flags: Mapping[str, str | None] | None = None,
    env: Mapping[str, str] | None = None,
    machine: Machine | None = None,
) -> Settings:
    """Resolve every option: flag, then `ZAKO_*` environment variable, then default.

    Raises ValueError naming the option and where the bad value came from.
    """
    flags = flags or {}
    env = env or {}
    machine = machine or probe_machine()
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in OPTIONS:
        raw, source = flags.get(option.name), f"flag {option.flag}"
        if raw is None and option.env in env:
            raw, source = env[option.env], f"env {option.env}"
        if raw is None:
            continue
        try:
            values[option.name] = option.parse(raw)
        except ValueError as exc:
            raise ValueError(f"{option.name} from {source}: {exc}") from exc
        sources[option.name] = source
    if "max_workers" not in values:
        values["max_workers"] = default_max_workers(machine)
        sources["max_workers"] = f"heuristic: half of {machine.cpus:g} effective CPUs, >= 1"
    if "queue_capacity" not in values:
        values["queue_capacity"] = default_queue_capacity(values["max_workers"])
        sources["queue_capacity"] = "heuristic: max(2 x max_workers, 1024)"
    if "tenant_max_queued" not in values:
        # A quota above the queue's capacity could never be reached (#12).
        values["tenant_max_queued"] = values["queue_capacity"]
        sources["tenant_max_queued"] = "heuristic: queue_capacity"
    if "cas_bytes" not in values:
        values["cas_bytes"] = default_cas_bytes(machine)
        sources["cas_bytes"] = (
            f"heuristic: 10% of {machine.memory_bytes} bytes effective memory, in [4MiB, 4GiB]"
        )
    if "min_workers" not in values:
        values["min_workers"] = min(_DEFAULTS["min_workers"], values["max_workers"])
    return Settings(**values, machine=machine, sources=sources)


def settings_from_args(
    argv: Sequence[str] | None, env: Mapping[str, str]
) -> tuple[Settings, argparse.Namespace]:
    """Parse the command line of `zako-server` into Settings (plus the non-setting flags)."""
    parser = argparse.ArgumentParser(
        prog="zako-server",
        description="Zako: remote execution of JavaScript on a pool of V8 workers, over gRPC.",
    )
    add_arguments(parser)
    parser.add_argument(
        "--resource",
        action="append",
        default=[],
        metavar="NAME=AMOUNT",
        help="a resource capacity; may repeat (joins --resources)",
    )
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print every setting, its value and where it came from, then exit",
    )
    args = parser.parse_args(argv)
    flags = {option.name: getattr(args, option.name) for option in OPTIONS}
    if args.resource:
        flags["resources"] = ",".join(filter(None, [flags["resources"], *args.resource]))
    try:
        settings = build_settings(flags, env)
    except ValueError as exc:
        parser.error(str(exc))
    return settings, args
