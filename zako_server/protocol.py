"""The pipe protocol between the pool (parent) and a V8 worker process (child).

    parent ──RunFrame, CancelFrame, GcFrame, PingFrame, ExitFrame──▶ child stdin
    parent ◀──ReadyEvent, StartedEvent, LogsEvent, LogEvent, DoneEvent, GcEvent,
              PongEvent── child frame fd

Every message is one of the msgspec Structs below; their docstrings are the
specification. Frames are a 4-byte big-endian length followed by that many bytes of UTF-8
JSON (one object, tagged by "op" parent->child or "ev" child->parent): codec.py, the one
place where a Struct becomes a JSON object and back, says why JSON rather than protobuf
and why msgspec. The types declared here are the schema msgspec checks on the way in:
a wrong type, a missing or unknown key, or a value outside a Literal or an enum is
refused, so a reader never sees a half-valid frame.

The child reads frames on stdin and writes frames on a private duplicate of its
original stdout; its fd 1 is pointed at stderr so that nothing V8 or a library prints
can corrupt the frame stream. Server and worker always ship together: there is no
version negotiation, and a frame either side does not understand is a bug.

Imported by both processes, so it must stay free of gRPC, protobuf and V8.
"""

import typing
from enum import Enum
from typing import Any, Literal

import msgspec

LogLevel = Literal["debug", "info", "warn", "error"]
LOG_LEVELS: frozenset[str] = frozenset(typing.get_args(LogLevel))


class FailureReason(str, Enum):
    """Why a task did not complete: the `reason` of a failed DoneEvent. A str, so it
    goes into JSON (and compares) as its value.

    The engine maps each to the contract's pb.FailureReason in one table, except
    CANCELLED, which is not a failure: the task ends with a Cancelled event.
    """

    JS_ERROR = "js_error"
    SYNTAX_ERROR = "syntax_error"
    TIMEOUT = "timeout"
    OUT_OF_MEMORY = "out_of_memory"
    DEADLOCK = "deadlock"
    NOT_SERIALIZABLE = "not_serializable"
    RESULT_TOO_LARGE = "result_too_large"
    WORKER_LOST = "worker_lost"
    MODULE_NOT_FOUND = "module_not_found"
    CAPABILITY_DENIED = "capability_denied"
    INTERNAL = "internal"
    CANCELLED = "cancelled"


# Node's built-in modules as a task's `require` finds them (also as "node:<name>"): the
# server advertises them (Capabilities.builtin_modules) and the worker's prelude answers
# them, so both take the one list from here. Those needing I/O load, but their functions
# throw CapabilityError.
NODE_BUILTINS: tuple[str, ...] = (
    "assert",
    "assert/strict",
    "async_hooks",
    "buffer",
    "child_process",
    "cluster",
    "crypto",
    "dgram",
    "dns",
    "events",
    "fs",
    "fs/promises",
    "http",
    "http2",
    "https",
    "inspector",
    "module",
    "net",
    "os",
    "path",
    "path/posix",
    "perf_hooks",
    "process",
    "querystring",
    "readline",
    "stream",
    "stream/promises",
    "string_decoder",
    "timers",
    "tls",
    "tty",
    "url",
    "util",
    "util/types",
    "v8",
    "vm",
    "worker_threads",
    "zlib",
)

# The fields of RunFrame that stay in the parent (server side only): a frame that holds
# one is refused by the encoder, and a decoded frame that names one is a bad frame.
PARENT_ONLY: tuple[str, ...] = ("tree_files", "tree_prepared")


class _Parent(msgspec.Struct, tag_field="op", forbid_unknown_fields=True, omit_defaults=True):
    """A parent -> child frame; each subclass names its "op" (`tag=`). Fields at their
    default are left out on the wire: an idle field costs a frame nothing."""


class _Child(msgspec.Struct, tag_field="ev", forbid_unknown_fields=True, omit_defaults=True):
    """A child -> parent event; each subclass names its "ev" (`tag=`)."""


class _Part(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A value nested in a frame (no tag of its own)."""


# The warm-isolate key of a task, (tenant, context kind, hermetic): the pool picks a worker
# by it and the worker keys its isolates by it, so both sides take it from RunFrame.
ReuseKey = tuple[str, str, bool]


def is_hermetic(kind: str, system_access: bool) -> bool:
    """Only a config context with system access is not hermetic (both sides' rule)."""
    return not (kind == "config" and system_access)


# ---- parent -> child --------------------------------------------------------------------


class TaskContext(_Part):
    """What the task's `zako:context` module and the prelude's hardening see.

    `epoch_ms` and `seed` pin the hermetic clock and PRNG; None lets the prelude choose
    its defaults (they reach its configuration only when set)."""

    kind: str  # package | build | rule | toolchain | config
    task_id: str
    labels: dict[str, str]
    system_access: bool
    epoch_ms: int | None = None
    seed: str | None = None

    @property
    def hermetic(self) -> bool:
        return is_hermetic(self.kind, self.system_access)


class RunFrame(_Parent, tag="run"):
    """Run one task; the child answers StartedEvent, LogEvent*, then exactly one DoneEvent.

    `entry` names the entry module, one of `modules` (name -> source; on the pipe, a
    file may instead be named by `digests` alone, its text held by the worker). `input` is JSON
    text ("" for none). `reuse` is the tenant whose warm isolate may run the task (None:
    a fresh isolate), `reuse_max_tasks` how many tasks one warm isolate may run. A run
    that arrives while another runs waits in order behind it."""

    id: str
    entry: str
    modules: dict[str, str]
    input: str
    context: TaskContext
    timeout_s: float
    max_heap_bytes: int
    max_log_bytes: int
    max_result_bytes: int
    reuse: str | None
    reuse_max_tasks: int
    # Past this many lines (or max_log_bytes) a task's further lines are dropped.
    max_log_lines: int = 10_000
    # The transform stage's answers for the files it transformed (server/transforms.py):
    # {path: {esm, code, map[, names]} | {error}}; modules.js uses them instead of the text.
    prepared: dict[str, Any] = msgspec.field(default_factory=dict)
    # path -> lowercase hex SHA-256 of the file's UTF-8 text, for every file of `modules`
    # (validation fills it: from the task's digests, or by hashing inline sources). The
    # key of the worker's code cache and part of the action cache's key.
    digests: dict[str, str] = msgspec.field(default_factory=dict)
    # On the pipe only (WorkerHandle builds them; see server/code_mirror.py): the worker
    # keeps module texts by digest, and the parent mirrors exactly what it keeps. A file
    # named in `digests` but absent from `modules` is read from that store; `sources`
    # (digest -> text) are the texts it must add first, after dropping `forget`. A
    # prepared answer may name its code by digest ("code_digest") instead of "code".
    sources: dict[str, str] = msgspec.field(default_factory=dict)
    forget: list[str] = msgspec.field(default_factory=list)
    # On the pipe only: the task's ModuleTree as one unit, the digest of its *pack*: the
    # compact JSON text {"files": [[path, digest], ...], "prepared": [[path, answer],
    # ...]} (the tree's files in order, the transform answers for those it transformed,
    # their code by "code_digest"). Its files are the task's beside `modules`/`digests`
    # (never the same path). The worker holds packs like texts: a pack arrives once, as
    # `sources[tree]`, and then holds every text it names (files and code), those the
    # worker holds under no other unit given in `tree_texts` (digest -> text); `forget`
    # naming a pack drops it with its hold on them. So a repeated tree costs a frame one
    # digest, not a path, digest and answer per file (server/code_mirror.py).
    tree: str | None = None
    tree_texts: dict[str, str] = msgspec.field(default_factory=dict)
    # Never on the pipe (server side only, PARENT_ONLY): the task's resolved ModuleTree
    # (server/trees.TreeFiles), whose files are the task's beside `modules`, and the
    # transform stage's answers for them (path -> answer), set before dispatch. The
    # frame WorkerHandle writes has them None (code_mirror builds it), so they are left
    # out like any default; the codec refuses a frame that holds either.
    tree_files: Any = None
    tree_prepared: Any = None

    @property
    def reuse_key(self) -> ReuseKey | None:
        """Which warm isolate may run this task; None: it wants a fresh one."""
        if self.reuse is None or self.reuse_max_tasks <= 0:
            return None
        return (self.reuse, self.context.kind, self.context.hermetic)


class CancelFrame(_Parent, tag="cancel"):
    """Stop task `id`: running, it ends with reason CANCELLED; queued, it never starts
    (its DoneEvent still comes). An unknown id is ignored."""

    id: str


class WithdrawFrame(_Parent, tag="withdraw"):
    """Take back task `id` if it is still queued (the parent sent it ahead, see
    server/pool.py): it ends with a DoneEvent of reason CANCELLED and no StartedEvent.
    Started already, or unknown: ignored (unlike a cancel, it never stops a running task)."""

    id: str


class GcFrame(_Parent, tag="gc"):
    """Collect garbage in every idle isolate; one GcEvent answers, after the current
    (or already received) task if there is one."""


class PingFrame(_Parent, tag="ping"):
    """A heartbeat: the child answers PongEvent(seq) at once, idle or while a task runs
    (its event loop keeps running: task code runs in V8 off the loop). A child that
    stops answering is deemed hung and replaced."""

    seq: int


class ExitFrame(_Parent, tag="exit"):
    """Close the V8 instances and exit 0; queued runs end CANCELLED."""


# ---- child -> parent --------------------------------------------------------------------


class HeapFigures(_Part):
    """V8 heap bytes of one isolate (or a sum over isolates). In a DoneEvent, `limit` is
    the task's own heap limit, not V8's."""

    used: int = 0
    total: int = 0
    limit: int = 0


class JsError(_Part):
    """A failed task's error. module/line/column are None when no task frame is known
    (a non-Error throw, a timeout); `code` is the thrown error's `code` property as a
    string (e.g. "MODULE_NOT_FOUND"), or None."""

    name: str
    message: str
    stack: str
    module: str | None = None
    line: int | None = None
    column: int | None = None
    code: str | None = None


class ReadyEvent(_Child, tag="ready"):
    """The child is up, with a spare isolate made: it takes runs from now on."""

    pid: int
    v8_version: str
    mini_racer_version: str


class StartedEvent(_Child, tag="started"):
    """The child began task `id` (before this, a lost worker means it never ran)."""

    id: str


class LogEvent(_Child, tag="log"):
    """One console line of task `id`; `ts` is its wall-clock time in seconds. Every log
    of a task comes before its DoneEvent."""

    id: str
    level: LogLevel
    message: str
    ts: float


class LogsEvent(_Child, tag="logs"):
    """Console lines of task `id`, oldest first, coalesced: one frame per poll of the
    task (at most LOG_BATCH_LINES lines each), so a task that prints a million lines
    costs a few hundred frames, not a million. Each line is [level, message, ts] with
    `ts` its wall-clock time in seconds; the reader checks each entry's types. Every
    log of a task comes before its DoneEvent."""

    id: str
    lines: list[Any]


# Most lines in one LogsEvent (and in one log event of the contract).
LOG_BATCH_LINES = 1000


class DoneEvent(_Child, tag="done"):
    """How task `id` ended: `value` (its result as JSON text) when `reason` is None,
    else `reason` and `error`. `heap` is None only when the parent made this up for a
    worker that could not send it. `warm`: the task ran in an isolate an earlier task
    had used."""

    id: str
    cpu_s: float
    run_s: float
    heap: HeapFigures | None
    logs_dropped: int
    warm: bool
    value: str | None = None
    reason: FailureReason | None = None
    error: JsError | None = None
    # The task observed something outside its cache key (it read context.taskId): its
    # outcome must not be stored in the action cache.
    uncacheable: bool = False
    # Modules this task loaded from a wrapper its warm isolate had compiled already, and
    # modules it had to compile (the workers' code cache; the parent sums them).
    compiled_hits: int = 0
    compiled_misses: int = 0
    # Digests the frame named that the worker did not hold (the parent's mirror drifted,
    # a bug): the task failed `internal`, and the parent forgets them.
    missing: list[str] = msgspec.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.reason is None


class GcEvent(_Child, tag="gc"):
    """The answer to a GcFrame: the idle isolates' heaps summed, and the process's RSS."""

    before: HeapFigures
    after: HeapFigures
    rss_before: int
    rss_after: int


class PongEvent(_Child, tag="pong"):
    """The answer to PingFrame `seq`."""

    seq: int


ParentFrame = RunFrame | CancelFrame | WithdrawFrame | GcFrame | PingFrame | ExitFrame
ChildEvent = ReadyEvent | StartedEvent | LogsEvent | LogEvent | DoneEvent | GcEvent | PongEvent
Frame = ParentFrame | ChildEvent
