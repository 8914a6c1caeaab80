"""The action cache: the outcomes of hermetic tasks, keyed by everything that decides them.

    Engine.submit ─▶ key(job, tenant) ─ None (system access, SKIP, switched off) ─▶ runs
                         │
                         ├ lookup: held ──────────▶ hit: Accepted, stored logs, terminal (cached)
                         ├ flight: one is running ─▶ join: wait for it ─┬ cacheable: its outcome
                         │                                              └ not: run (or join anew)
                         └ neither ─▶ lead a flight ─▶ admission ─▶ worker ─▶ store + land

A hermetic task is a function of its inputs: the entry, the module tree, the input JSON,
the context (kind, labels, epoch, seed), the limits that shape an outcome and the
runtime that runs it. `action_key` hashes all of them, plus the caller's tenant: tenants
are mutually hostile, and a hit must never tell one tenant what another ran. Outcomes
that depend on limits or luck (timeouts, running out of memory, a lost worker,
cancellation) are never stored; neither is the outcome of a task that observed
something outside its key (`DoneEvent.uncacheable`: it read `context.taskId`).

The store is bounded in bytes (values, errors and log lines) and evicts the least
recently used outcome. Nothing here knows about gRPC or workers: the engine (engine.py)
decides when a task looks, joins, runs and stores.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import orjson

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_server.protocol import LOG_BATCH_LINES, RunFrame
from zako_server.server.validation import Job

# Failures that follow from the task's inputs alone: the same task fails the same way
# (RESULT_TOO_LARGE: the result limit is part of the key). Timeouts, memory, lost
# workers, cancellation and deadlines depend on the moment, so they are never stored.
CACHEABLE_FAILURES = frozenset(
    {
        pb.FAILURE_REASON_JS_ERROR,
        pb.FAILURE_REASON_SYNTAX_ERROR,
        pb.FAILURE_REASON_MODULE_NOT_FOUND,
        pb.FAILURE_REASON_CAPABILITY_DENIED,
        pb.FAILURE_REASON_NOT_SERIALIZABLE,
        pb.FAILURE_REASON_DEADLOCK,
        pb.FAILURE_REASON_RESULT_TOO_LARGE,
    }
)
# An entry's bookkeeping (its key, dict slot, the Outcome and its bytes objects), counted
# against the budget so that a flood of tiny outcomes is bounded too: measured at
# ~370 bytes of process memory per entry beyond its serialized messages.
ENTRY_OVERHEAD_BYTES = 512
# Bumped when the key's encoding changes.
KEY_VERSION = "zako.action.v3"

_PACKAGE = Path(__file__).resolve().parent.parent  # zako_server/


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def _runtime_files(package: Path) -> Iterator[Path]:
    """Every file of the runtime a task's outcome can depend on: the worker's prelude,
    lockdown and modules (JS) and its driver (Python), the transform stage's script,
    and the pinned JS dependencies (sucrase, the vendored libraries)."""
    yield from sorted((package / "worker").rglob("*.js"))
    yield from sorted((package / "worker").rglob("*.py"))
    yield from sorted((package / "transform").rglob("*.js"))
    yield package / "jsdeps" / "package-lock.json"


def runtime_fingerprint(package: Path = _PACKAGE) -> str:
    """A digest of the runtime's own version: its files' contents, Zako's version and
    mini-racer's (which pins V8). Read from files and package metadata, never by
    importing the worker or V8, which the server process must not load."""
    parts: list[str] = [KEY_VERSION, _version("zako"), _version("mini-racer")]
    for path in _runtime_files(package):
        if "node_modules" in path.parts or "__pycache__" in path.parts:
            continue
        try:
            data = path.read_bytes()
        except OSError:
            data = b"<missing>"
        parts += [path.relative_to(package).as_posix(), hashlib.sha256(data).hexdigest()]
    return _digest(parts)


def _digest(parts: list[str]) -> str:
    """The SHA-256 of `parts` as one JSON array of strings, which no other list of
    strings encodes to: one orjson call, where a length prefix and an update per part
    were ~75 C calls a task and 4 % of the server's instructions per trivial task. A
    lone surrogate (which JSON cannot hold) falls back to length-prefixed parts after a
    NUL byte, which no JSON text starts with."""
    try:
        data = orjson.dumps(parts)
    except orjson.JSONEncodeError:
        encoded = (part.encode("utf-8", "surrogatepass") for part in parts)
        data = b"\0" + b"".join(len(b).to_bytes(8, "big") + b for b in encoded)
    return hashlib.sha256(data).hexdigest()


def _text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def tree_digests(frame: RunFrame) -> list[tuple[str, str]]:
    """The (path, SHA-256 hex) pairs of the task's own files, sorted: from the digests
    validation filled in, or by hashing a file's text where it filled none. A ModuleTree
    beside them is keyed by its manifest's digest (`action_key`)."""
    known = frame.digests
    return sorted(
        (path, known.get(path) or _text_digest(text)) for path, text in frame.modules.items()
    )


def action_key(job: Job, tenant: str, fingerprint: str, message_bytes: int) -> str:
    """The hex digest of everything that decides a hermetic task's outcome.

    Not in it, on purpose: the task's id (a task that reads it is not cached), its
    priority, timeout and queue timeout (a timeout is never stored, and a task cannot
    see its own timeout), and its resource requests other than the heap limit."""
    frame = job.frame
    context = frame.context
    parts: list[str] = [
        KEY_VERSION,
        fingerprint,
        tenant,
        frame.entry,
        context.kind,
        "hermetic" if context.hermetic else "system",
        str(context.epoch_ms),
        context.seed or "",
        frame.input,
        # The limits that shape an outcome: what is dropped from the logs, which result
        # is too large, which allocation throws inside the task's own try/catch.
        str(frame.max_result_bytes),
        str(frame.max_log_bytes),
        str(frame.max_log_lines),
        str(frame.max_heap_bytes),
        str(message_bytes),
    ]
    labels = sorted(context.labels.items())
    parts.append(str(len(labels)))
    parts += [x for item in labels for x in item]
    files = tree_digests(frame)
    parts.append(str(len(files)))
    parts += [x for item in files for x in item]
    # A ModuleTree by the digest of its manifest, the sorted [path, digest] pairs of
    # every file (trees.py): it covers each file of the tree, and costs one part, not
    # two per file, on every task.
    tree = frame.tree_files
    parts.append("" if tree is None else tree.manifest_digest)
    return _digest(parts)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A stored outcome: the terminal message (a Result or a Failed) without its
    timings, and the log lines the task's client received.

    All kept serialized, the lines LOG_BATCH_LINES to a blob (one `log` event's LogLine
    with its `more`): as message objects, a 30-byte line costs ~900 bytes of memory and
    a small Result ~600, and the byte budget would count a fraction of what is held."""

    completed: bool  # `message` is a Result (else a Failed)
    message: bytes
    log_batches: tuple[bytes, ...]
    line_count: int
    logs_dropped: int
    size: int

    @classmethod
    def of(
        cls, terminal: pb.SubmitResponse, lines: Sequence[pb.LogLine], logs_dropped: int
    ) -> Outcome | None:
        """The outcome to store for a task's terminal event, or None if it must not be."""
        kind = terminal.WhichOneof("event")
        kept: pb.Result | pb.Failed
        if kind == "completed":
            kept = pb.Result()
            kept.CopyFrom(terminal.completed.result)
            kept.ClearField("worker_id")  # a replay did not run on any worker
        elif kind == "failed" and terminal.failed.reason in CACHEABLE_FAILURES:
            kept = pb.Failed()
            kept.CopyFrom(terminal.failed)
        else:
            return None
        kept.ClearField("timings")
        message = kept.SerializeToString()
        batches = []
        for start in range(0, len(lines), LOG_BATCH_LINES):
            head = pb.LogLine()
            head.CopyFrom(lines[start])
            head.more.extend(lines[start + 1 : start + LOG_BATCH_LINES])
            batches.append(head.SerializeToString())
        size = ENTRY_OVERHEAD_BYTES + len(message) + sum(len(batch) for batch in batches)
        return cls(kind == "completed", message, tuple(batches), len(lines), logs_dropped, size)

    def terminal(self, timings: pb.Timings) -> dict[str, pb.Completed | pb.Failed]:
        """The keyword for `TaskRecord.event` that replays this outcome, marked cached."""
        if self.completed:
            result = pb.Result(cached=True, timings=timings)
            result.MergeFromString(self.message)
            return {"completed": pb.Completed(result=result)}
        failed = pb.Failed(cached=True, timings=timings)
        failed.MergeFromString(self.message)
        return {"failed": failed}


@dataclass(eq=False)
class Flight:
    """A cacheable task on its way to a worker; identical tasks wait on `landed` and
    then read `outcome` (None: the leader's outcome was not cacheable)."""

    landed: asyncio.Event = field(default_factory=asyncio.Event)
    outcome: Outcome | None = None


@dataclass(frozen=True)
class ActionCacheStats:
    """A snapshot of the cache's figures (Stats, metrics)."""

    enabled: bool
    entries: int
    bytes: int
    capacity: int
    hits: int
    misses: int
    joins: int
    stores: int
    evictions: int


class ActionCache:
    """Outcomes by action key, least recently used evicted past `capacity` bytes, and
    the flights (identical tasks in progress) that others may join."""

    def __init__(
        self,
        enabled: bool,
        capacity: int,
        message_bytes: int,
        fingerprint: str | None = None,
    ) -> None:
        self.enabled = enabled
        self.capacity = capacity
        # The message limit: an engine-made RESULT_TOO_LARGE depends on it.
        self.message_bytes = message_bytes
        # Computed once: the runtime's files do not change under a running server.
        self.fingerprint = fingerprint if fingerprint is not None else runtime_fingerprint()
        self._entries: OrderedDict[str, Outcome] = OrderedDict()
        self._flights: dict[str, Flight] = {}
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.joins = 0
        self.stores = 0
        self.evictions = 0

    def key(self, job: Job, tenant: str, policy: int) -> str | None:
        """The task's action key, or None if this task neither reads nor writes the
        cache (switched off, CACHE_POLICY_SKIP, or a task with system access)."""
        if (
            not self.enabled
            or policy == pb.CACHE_POLICY_SKIP
            or job.frame.context.system_access
            or not job.frame.context.hermetic
        ):
            return None
        return action_key(job, tenant, self.fingerprint, self.message_bytes)

    def lookup(self, key: str) -> Outcome | None:
        """The stored outcome (now the most recently used), counted as a hit."""
        outcome = self._entries.get(key)
        if outcome is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return outcome

    def store(self, key: str, outcome: Outcome) -> bool:
        """Keep an outcome, evicting the least recently used past the budget; False if
        it alone is larger than the budget (then nothing is evicted for it)."""
        if outcome.size > self.capacity:
            return False
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old.size
        self._entries[key] = outcome
        self.bytes += outcome.size
        self.stores += 1
        while self.bytes > self.capacity:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= evicted.size
            self.evictions += 1
        return True

    def flight(self, key: str) -> Flight | None:
        """The identical task in progress, if there is one to join."""
        return self._flights.get(key)

    def lead(self, key: str) -> Flight | None:
        """Open a flight for a task about to run; None if one is already open (the
        task runs anyway, as a REFRESH does, but others keep joining the first)."""
        if key in self._flights:
            return None
        flight = self._flights[key] = Flight()
        return flight

    def land(self, key: str, flight: Flight, outcome: Outcome | None) -> None:
        """Close a flight: its joiners wake and take `outcome` (None: they run)."""
        if self._flights.get(key) is flight:
            del self._flights[key]
        flight.outcome = outcome
        flight.landed.set()

    def statistics(self) -> ActionCacheStats:
        return ActionCacheStats(
            enabled=self.enabled,
            entries=len(self._entries),
            bytes=self.bytes,
            capacity=self.capacity,
            hits=self.hits,
            misses=self.misses,
            joins=self.joins,
            stores=self.stores,
            evictions=self.evictions,
        )
