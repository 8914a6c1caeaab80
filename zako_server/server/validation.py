"""Turn a `zako.v1.Task` into a job for a worker, or reject it naming the field.

Everything a client can get wrong is caught here, before the task takes a place in the
queue, so that a bad task costs one event and nothing else. INVALID_ARGUMENT means the
task is malformed; FAILED_PRECONDITION means it is well-formed but can never run on this
server (asks for more than it has, or for something it does not allow).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import cast

from zako_sdk.models import CONTEXT_KINDS
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_server.protocol import NODE_BUILTINS, RunFrame, TaskContext
from zako_server.server.cas import ContentStore
from zako_server.server.errors import CannotFit, InvalidTask
from zako_server.server.settings import Settings
from zako_server.server.task_files import TaskFiles, gather
from zako_server.server.trees import TreeFiles, TreeMemo, file_set

PRIORITY_MIN = -1000
PRIORITY_MAX = 1000
MAX_LABELS = 64
MAX_LABEL_KEY = 63
MAX_LABEL_VALUE = 1024
MAX_ID_LENGTH = 256
_ID = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces: safe in logs and URLs
# The wire number of each context kind -> its name: the inverse of the SDK's one table,
# so a new kind is added in one place.
CONTEXT_NAMES = cast(
    "dict[pb.ContextKind, str]", {kind: name for name, kind in CONTEXT_KINDS.items()}
)
# What `require` finds without the task's tree (Capabilities.builtin_modules): Zako's own,
# and Node's by both names ("path" and "node:path"); those needing I/O load, but their
# functions throw CapabilityError (docs/runtime.md). The worker's prelude answers the
# same list (protocol.NODE_BUILTINS).
BUILTIN_MODULES = ("zako:context", "zako:core", *NODE_BUILTINS)
# The virtual clock of a hermetic task that names no epoch: 2024-01-01T00:00:00Z, a fixed
# point like a reproducible build's SOURCE_DATE_EPOCH (see Task.epoch).
DEFAULT_EPOCH_MS = 1_704_067_200_000
MAX_SEED_LENGTH = 256
# Timestamps JavaScript's Date can hold: +-8.64e15 ms around 1970.
_MAX_DATE_MS = 8_640_000_000_000_000
# Task.cache's known values (once: `CachePolicy.values()` builds a list on every call).
_CACHE_POLICIES = frozenset(pb.CachePolicy.values())


@dataclass(frozen=True)
class Job:
    """A validated task: what the pool sends to a worker, plus what admission needs."""

    task_id: str
    priority: int
    timeout_s: float
    frame: RunFrame
    request: dict[str, float]
    size_bytes: int
    queue_timeout_s: float | None
    # Task.cache: how the task uses the action cache (server/action_cache.py).
    cache_policy: int = pb.CACHE_POLICY_UNSPECIFIED
    # Task.terminal_only: the engine builds no accepted or started event for it.
    terminal_only: bool = False


def _timeout(task: pb.Task, settings: Settings, deadline_s: float | None) -> float:
    if task.HasField("timeout"):
        seconds = task.timeout.seconds + task.timeout.nanos / 1e9
        if seconds < 0 or task.timeout.nanos < 0 or task.timeout.nanos >= 1_000_000_000:
            raise InvalidTask(
                f"task.timeout must be a positive duration, got {seconds}s", field="task.timeout"
            )
        if seconds < settings.min_timeout:
            raise InvalidTask(
                f"task.timeout {seconds}s is below the minimum {settings.min_timeout}s",
                field="task.timeout",
            )
        timeout = min(seconds, settings.max_timeout)
    else:
        timeout = settings.default_timeout
    if deadline_s is not None:
        timeout = min(timeout, max(deadline_s, 0.0))
    return timeout


def _request(task: pb.Task, settings: Settings) -> dict[str, float]:
    """What the task asks admission for. Shape errors are INVALID_ARGUMENT here; whether
    the amounts can ever fit is admission's call (it knows the capacities)."""
    res = task.resources
    if res.cpu_millis < 0:
        raise InvalidTask(
            f"task.resources.cpu_millis must be >= 0, got {res.cpu_millis}",
            field="task.resources.cpu_millis",
        )
    if res.memory_bytes < 0:
        raise InvalidTask(
            f"task.resources.memory_bytes must be >= 0, got {res.memory_bytes}",
            field="task.resources.memory_bytes",
        )
    if res.memory_bytes > settings.max_memory:
        raise CannotFit(
            f"task.resources.memory_bytes asks for {res.memory_bytes} bytes; the "
            f"largest heap this server grants is {settings.max_memory}",
            field="task.resources.memory_bytes",
        )
    request = {
        "cpu": float(res.cpu_millis or settings.default_cpu_millis),
        "memory": float(res.memory_bytes or settings.default_memory),
    }
    for name, amount in res.extras.items() if res.extras else ():
        field = f"task.resources.extras[{name!r}]"
        if math.isnan(amount) or math.isinf(amount) or amount < 0:
            raise InvalidTask(f"{field} must be a finite amount >= 0, got {amount}", field=field)
        if name in {"cpu", "memory", "workers"}:
            raise InvalidTask(
                f"{field}: {name!r} is not an extra; use the typed field", field=field
            )
        if amount > 0:
            request[name] = float(amount)
    return request


def _queue_timeout(task: pb.Task, deadline_s: float | None) -> float | None:
    limits = [] if deadline_s is None else [deadline_s]
    if task.HasField("queue_timeout"):
        seconds = task.queue_timeout.seconds + task.queue_timeout.nanos / 1e9
        if seconds <= 0 or task.queue_timeout.nanos < 0:
            raise InvalidTask(
                f"task.queue_timeout must be a positive duration, got {seconds}s",
                field="task.queue_timeout",
            )
        limits.append(seconds)
    return min(limits) if limits else None


def _epoch_ms(task: pb.Task) -> int:
    if not task.HasField("epoch"):
        return DEFAULT_EPOCH_MS
    ms = task.epoch.seconds * 1000 + task.epoch.nanos // 1_000_000
    if not 0 <= task.epoch.nanos < 1_000_000_000 or abs(ms) > _MAX_DATE_MS:
        raise InvalidTask(
            "task.epoch is outside the range JavaScript's Date can hold", field="task.epoch"
        )
    return ms


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON (RFC 8259 has no NaN or Infinity)")


# One decoder for every task: `json.loads` with a keyword builds a new one on each call.
_INPUT_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _seed(
    task: pb.Task,
    entry: str,
    digests: dict[str, str],
    input_data: bytes,
    tree: TreeFiles | None = None,
) -> str:
    """The task's seed, or one derived from its content: the same task draws the same
    numbers on every server, and tasks that differ in any byte draw different ones.

    Derived from the files' digests (not their text), as an order-free hash of the
    (path, digest) set (trees.file_set): a tree sent inline, by digest or as a
    ModuleTree draws the same numbers, no source is hashed twice, and a tree's share is
    computed once per tree, not per task.
    Under system access randomness is real: the seed is fresh OS entropy, from which
    (with V8's own generator) the worker keys crypto.getRandomValues and friends."""
    seed = task.seed
    if len(seed) > MAX_SEED_LENGTH:
        raise InvalidTask(
            f"task.seed is longer than {MAX_SEED_LENGTH} characters", field="task.seed"
        )
    if task.system_access:
        return secrets.token_hex(32)
    if seed:
        return seed
    files = file_set(digests, tree.tree.file_set if tree is not None else 0)
    digest = hashlib.sha256()
    for data in (entry.encode("utf-8", "surrogatepass"), files.to_bytes(32, "big"), input_data):
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return "content:" + digest.hexdigest()


def validate(
    task: pb.Task,
    settings: Settings,
    *,
    deadline_s: float | None = None,
    tenant: str = "anonymous",
    store: ContentStore | None = None,
    trees: TreeMemo | None = None,
) -> Job:
    """Check every field; raise InvalidTask / CannotFit naming the first problem found,
    or MissingBlobs naming every blob the task names that `store` lacks for `tenant`
    (no store: none is held). `trees` (one per server) remembers checked and resolved
    ModuleTrees, so a repeated tree costs O(1) here (trees.py).

    `tenant` (the caller's) becomes the frame's `reuse` key: a worker may run the task in
    a warm isolate kept from the same tenant's earlier tasks, never in another tenant's.
    """
    task_id = task.id or uuid.uuid4().hex
    if len(task_id) > MAX_ID_LENGTH or not _ID.match(task_id):
        raise InvalidTask(
            f"task.id must be 1..{MAX_ID_LENGTH} printable ASCII characters without spaces",
            field="task.id",
        )
    entry = task.entry_name or "main.js"
    files = TaskFiles(settings, store, tenant, trees)
    missing = gather(task, entry, files)

    input_json = task.input_json or "null"
    input_data = input_json.encode("utf-8", "surrogatepass")
    size = len(input_data)
    if size > settings.max_input_bytes:
        raise InvalidTask(
            f"task.input_json is {size} bytes; the limit is {settings.max_input_bytes}",
            field="task.input_json",
        )
    try:
        # Python's json takes NaN/Infinity, which are not JSON: V8's JSON.parse would
        # refuse them in the worker, after the task took a place in the queue.
        _INPUT_DECODER.decode(input_json)
    except ValueError as exc:
        raise InvalidTask(
            f"task.input_json is not valid JSON: {exc}", field="task.input_json"
        ) from exc
    except RecursionError as exc:  # #12: thousands of '[' must not end the stream
        raise InvalidTask(
            "task.input_json is nested too deeply to parse", field="task.input_json"
        ) from exc

    if task.context == pb.CONTEXT_KIND_UNSPECIFIED:
        kind = "build"
    elif task.context in CONTEXT_NAMES:
        kind = CONTEXT_NAMES[task.context]
    else:
        raise InvalidTask(
            f"task.context {task.context} is not a known context kind", field="task.context"
        )
    if task.system_access and kind != "config":
        raise InvalidTask(
            f"task.system_access is only for config contexts, not {kind!r}",
            field="task.system_access",
        )
    if task.system_access and not settings.allow_system_access:
        raise CannotFit(
            "task.system_access: this server does not grant system access",
            field="task.system_access",
        )

    if not PRIORITY_MIN <= task.priority <= PRIORITY_MAX:
        raise InvalidTask(
            f"task.priority {task.priority} is outside [{PRIORITY_MIN}, {PRIORITY_MAX}]",
            field="task.priority",
        )
    # A plain dict of them, read once: iterating the message's map costs more than this
    # copy, even empty.
    labels = dict(task.labels) if task.labels else {}
    if len(labels) > MAX_LABELS:
        raise InvalidTask(
            f"task.labels has {len(labels)} entries; the limit is {MAX_LABELS}",
            field="task.labels",
        )
    for key, value in labels.items():
        if not key or len(key) > MAX_LABEL_KEY or len(value) > MAX_LABEL_VALUE:
            raise InvalidTask(
                f"task.labels[{key!r}]: keys are 1..{MAX_LABEL_KEY} characters, "
                f"values at most {MAX_LABEL_VALUE}",
                field="task.labels",
            )

    request = _request(task, settings)
    timeout = _timeout(task, settings, deadline_s)
    # Blobs last, once nothing else is wrong: a client uploads what is missing only for
    # a task that can then run. Everything is resolved here, before the task is queued:
    # from now on the job holds the text itself, so an eviction (or a TTL sweep) while it
    # waits cannot take a file from under it: it runs with every file it named, or never.
    files.resolve(missing)
    frame = RunFrame(
        id=task_id,
        entry=entry,
        modules=files.modules,
        digests=files.digests,
        input=input_json,
        context=TaskContext(
            kind=kind,
            task_id=task_id,
            labels=labels,
            system_access=bool(task.system_access),
            # The virtual clock and PRNG seed of a hermetic context (the prelude ignores
            # both under system access, where clock and randomness are real).
            epoch_ms=_epoch_ms(task),
            seed=_seed(task, entry, files.digests, input_data, files.tree_files),
        ),
        timeout_s=timeout,
        max_heap_bytes=int(request["memory"]),
        max_log_bytes=settings.max_log_bytes,
        max_result_bytes=settings.max_result_bytes,
        # Warm isolates are shared only within one tenant: globals a task leaves behind
        # must never reach another tenant's code. None asks for a fresh isolate.
        reuse=(None if task.fresh_isolate or settings.isolate_reuse == "never" else tenant),
        reuse_max_tasks=settings.isolate_max_tasks,
        max_log_lines=settings.max_log_lines,
        tree_files=files.tree_files,
    )
    # What the task itself brought: text from the store is shared with it (and counted
    # in its budget), so a hundred queued tasks naming typescript.js count it once.
    size = files.inline_bytes + len(input_data)
    if task.cache not in _CACHE_POLICIES:
        raise InvalidTask(
            f"task.cache {task.cache} is not a known cache policy", field="task.cache"
        )
    return Job(
        task_id,
        task.priority,
        timeout,
        frame,
        request,
        size,
        _queue_timeout(task, deadline_s),
        cache_policy=task.cache,
        terminal_only=task.terminal_only,
    )
