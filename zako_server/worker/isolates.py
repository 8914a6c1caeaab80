"""The V8 instances one worker process holds: a spare no task has used, and a warm one.

    run (key) ──take()──▶ warm instance if its key matches, else the spare (or a new one)
    done      ──give_back()──▶ keep() says whether it may serve the key again; if so it
                               stays warm, its reset still to do; else close it
    next run  ──the reset opens the task's own eval; a refusal closes the isolate and the
                task runs in the spare (driver.ResetFailed)
    idle, gc  ──collect()──▶ reset (own eval), then a full GC; a refusal closes it

A fresh isolate costs about 4 ms of CPU (MiniRacer plus the prelude), several times what a
trivial task costs, so a worker keeps the isolate of its last reusable task. The key is
(tenant, context kind, hermetic): the server never lets two tenants share an isolate, and
kind and hermeticity decide which globals exist. The isolate was hardened (lockdown.js)
on its first reusable task; between two tasks the prelude drops the first one's state and
puts the global object back. Anything that leaves the isolate in doubt recycles it
instead: an abandoned eval, a failure outcome other than the task's own exception, a heap
over half the task's limit, a global that cannot be restored, too many tasks.

Why the reset is deferred: as an eval of its own after each task it cost a round trip
into V8 (and a timeout guard), a large share of a trivial task's worker CPU. Run as the
first step of the next task's eval it costs nothing extra, and it still comes before any
of that task's code. Only a task of the same key (the same tenant) next in line gets it
that way; before the worker idles or runs another key's task, it settles the isolate
(`settle`: the reset as an eval of its own, under RESET_TIMEOUT_S). A task's leftover
microtasks (V8 runs them after its eval returned) run before the next eval starts, so
what they log, schedule or set is dropped too. A chain of them that never ends delays
only the next task of the same key (it times out, and the isolate is closed); in every
other case the settling eval does not answer and the isolate is closed within
RESET_TIMEOUT_S, so leftover code never shares the worker with another tenant's task.
Whatever reads or collects an idle warm isolate resets it first, under the same bound,
so it never blocks on one (heap stats and GC are blocking calls).

The parent mirrors the key in `WorkerHandle.warm_key` (affinity.py) to route tasks here.
"""

from __future__ import annotations

import contextlib

from zako_server.protocol import FailureReason, HeapFigures, ReuseKey
from zako_server.worker.evaluation import BRIEF_WAIT_S
from zako_server.worker.runtime import Instance

# A reset eval of its own (idle paths) answers in well under a millisecond; longer means
# task code is still running (a microtask chain), and the isolate is closed instead.
RESET_TIMEOUT_S = 0.25
# Outcomes after which nothing of the task can still be running and the prelude's state
# is consistent: the task returned, threw, or was refused by the prelude.
# (None: the task succeeded.)
REUSABLE_REASONS: frozenset[FailureReason | None] = frozenset(
    {
        None,
        FailureReason.JS_ERROR,
        FailureReason.NOT_SERIALIZABLE,
        FailureReason.RESULT_TOO_LARGE,
        FailureReason.CAPABILITY_DENIED,
        FailureReason.MODULE_NOT_FOUND,
        FailureReason.DEADLOCK,
    }
)


# A heap reading costs about 0.35 ms of CPU, as much as the rest of what a trivial task
# costs a worker: mini-racer's heap_stats builds a new V8 context for each reading (2.8M
# instructions under callgrind, against ~1.4M for the rest of a trivial task). A task
# that ran this briefly in a warm isolate reports the isolate's latest reading instead,
# taken at most HEAP_MAX_AGE tasks and HEAP_MAX_RUN_S of their CPU time earlier: so
# little JavaScript cannot have moved the live heap far (a reading counts garbage too,
# so it is never exact). The measure is the worker's CPU time over the task, not its
# wall time: under load a trivial task spends milliseconds descheduled, and one in 24
# took a reading of its own. CPU time counts the worker's own Python too, about two
# thirds of a trivial task's: 50 ms of it is about as much JavaScript as 20 ms of run
# time were before, and under the one-stream load a reading now comes once in ~60
# tasks (~0.05M instructions a task). An isolate about to be closed gets no shortcut:
# its reading is the task's last chance to have one of its own.
HEAP_FRESH_S = 0.002
HEAP_MAX_AGE = 64
HEAP_MAX_RUN_S = 0.05


def needs_reading(instance: Instance, run_s: float, retiring: bool = False) -> bool:
    """Whether the task gets a reading of its own rather than the isolate's last one
    (`run_s`: the CPU time the task took)."""
    return (
        retiring
        or instance.last_heap is None
        or instance.uses == 0
        or run_s >= HEAP_FRESH_S
        or instance.heap_age >= HEAP_MAX_AGE
        or instance.heap_run_s + run_s >= HEAP_MAX_RUN_S
    )


async def task_heap(instance: Instance, run_s: float, retiring: bool = False) -> HeapFigures | None:
    """`heap_reading`, safe against what the task left running. A reading is a blocking
    call into V8, which waits behind any microtasks the task left (they run after its
    eval returned): a chain of them that never ends hung the worker there until the
    parent's heartbeat killed it. So a reading of its own goes after a probe eval that
    must answer within RESET_TIMEOUT_S; one that does not marks the isolate retired (it
    is closed, which stops the chain) and the task reports no reading."""
    if needs_reading(instance, run_s, retiring) and not await _answers(instance):
        instance.retired = True
        return None
    return heap_reading(instance, run_s, retiring)


async def _answers(instance: Instance) -> bool:
    return await _bounded_eval(instance, "0", keep=True) is not _NO_ANSWER


# What `_bounded_eval` returns for an eval that failed or did not answer in time.
_NO_ANSWER = object()


async def _bounded_eval(instance: Instance, script: str, keep: bool = False) -> object:
    """The value of an eval of our own in an idle isolate, or _NO_ANSWER when it did not
    answer within RESET_TIMEOUT_S (task code still running) or failed: either way the
    isolate is not fit for anything more."""
    try:
        return await instance.eval(script, RESET_TIMEOUT_S, keep)
    except Exception:
        return _NO_ANSWER


def heap_reading(instance: Instance, run_s: float, retiring: bool = False) -> HeapFigures | None:
    """The task's heap figures (see above); None when the isolate may still be busy.
    `limit` is V8's; the caller puts the task's own limit there. Blocking: see
    `task_heap`."""
    last = instance.last_heap
    if last is None or needs_reading(instance, run_s, retiring):
        reading = _heap(instance)
        if reading is None:
            return None
        instance.last_heap, instance.heap_age, instance.heap_run_s = reading, 0, 0.0
        return HeapFigures(reading["used"], reading["total"], reading["limit"])
    instance.heap_age += 1
    instance.heap_run_s += run_s
    return HeapFigures(last["used"], last["total"], last["limit"])


def _heap(instance: Instance) -> dict[str, int] | None:
    """The isolate's heap figures, None when asking could block or the answer is garbage
    (mini-racer answers an isolate that hit its hard heap limit with empty text): a
    reading is a figure to report, never a reason for the task to fail."""
    try:
        return instance.heap()
    except ValueError:
        return None


async def reset(instance: Instance) -> bool:
    """Run a warm isolate's deferred reset in an eval of its own, before anything reads
    or collects it; False when it refused or did not answer in time (close it then)."""
    if not instance.needs_reset:
        return True
    instance.needs_reset = False
    # '' when fit; a refusal's reason, or no answer: not fit for reuse.
    return await _bounded_eval(instance, instance.reset_text, keep=True) == ""


async def _fits_after_collecting(
    instance: Instance, reason: FailureReason | None, heap: HeapFigures, max_tasks: int
) -> bool:
    """Whether an isolate refused only for its heap fits once its garbage is collected.

    The reading after a task counts its garbage: a warm isolate running typescript.js
    grows ~2.5 MiB a task and passes half of a 256 MiB limit after ~50 tasks, when only
    ~26 MiB is live. Retiring it then cost the next task ~300 ms (a new isolate, the
    texts handed in again and compiled again); a full collection costs ~37 ms, after the
    task's done event was sent. Live data over half the limit still retires it. The
    task's own module instances are live until its reset: that goes first."""
    if retiring(instance, reason, max_tasks, instance.uses) or heap.limit <= 0:
        return False
    if not await reset(instance):
        return False
    instance.collect()
    reading = _heap(instance)
    if reading is None:
        return False
    instance.last_heap, instance.heap_age, instance.heap_run_s = reading, 0, 0.0
    return reading["used"] <= heap.limit // 2


def retiring(instance: Instance, reason: FailureReason | None, max_tasks: int, uses: int) -> bool:
    """Whether an isolate that has run `uses` tasks, the last ending with `reason`, must
    be closed whatever its heap holds."""
    return (
        instance.tainted or instance.retired or reason not in REUSABLE_REASONS or uses >= max_tasks
    )


def keep(
    instance: Instance,
    reason: FailureReason | None,
    heap_used: int,
    heap_limit: int,
    max_tasks: int,
) -> bool:
    """Whether an isolate that just ran a reusable task may run another (before reset)."""
    return not retiring(instance, reason, max_tasks, instance.uses) and (
        # Live data the next task would inherit counts against its own limit.
        heap_limit <= 0 or heap_used <= heap_limit // 2
    )


class Isolates:
    """One spare and at most one warm instance; create inside the running loop."""

    def __init__(self, brief_wait: float = BRIEF_WAIT_S) -> None:
        self._brief_wait = brief_wait  # each instance's Evaluator's (evaluation.py)
        self.spare: Instance | None = None
        self.warm: Instance | None = None
        self.warm_key: ReuseKey | None = None

    def prepare(self) -> None:
        """Make the spare now, off the request path (raises if V8 cannot start)."""
        if self.spare is None:
            self.spare = Instance(self._brief_wait)

    def take(self, key: ReuseKey | None) -> tuple[Instance, bool]:
        """The instance for a task with `key` and whether an earlier task used it."""
        if key is not None and self.warm is not None and self.warm_key == key:
            instance, self.warm = self.warm, None
            return instance, True
        instance = self.spare if self.spare is not None else Instance(self._brief_wait)
        self.spare = None
        return instance, False

    async def give_back(
        self,
        instance: Instance,
        key: ReuseKey | None,
        reason: FailureReason | None,
        heap: HeapFigures,
        max_tasks: int,
    ) -> bool:
        """Keep `instance` warm for `key` if it is fit for that, its reset deferred to
        the next eval (see above); else close it."""
        instance.uses += 1
        instance.needs_reset = True
        if key is None or not (
            keep(instance, reason, heap.used, heap.limit, max_tasks)
            or await _fits_after_collecting(instance, reason, heap, max_tasks)
        ):
            instance.close()
            return False
        if self.warm is not None:
            self.warm.close()
        self.warm, self.warm_key = instance, key
        return True

    def unsettled(self, key: ReuseKey | None) -> bool:
        """Whether the warm isolate still holds its last task's state (its reset was
        deferred) and the next task, of `key` (None: none, the worker idles), will not
        open its eval with that reset: see `settle`."""
        warm = self.warm
        return warm is not None and warm.needs_reset and (key is None or key != self.warm_key)

    async def settle(self, key: ReuseKey | None) -> None:
        """Reset the warm isolate now, in an eval of its own, unless the next task (of
        `key`) runs in it and resets it first. A chain of microtasks the last task left
        running keeps that eval from answering: after RESET_TIMEOUT_S the isolate is
        closed, which stops the chain, so leftover code never runs beside another
        tenant's task or while the worker idles."""
        warm = self.warm
        if warm is None or not self.unsettled(key):
            return
        if not await reset(warm):
            warm.close()
            if self.warm is warm:
                self.warm = self.warm_key = None

    def live(self) -> list[Instance]:
        """Instances that are idle and can be asked for heap figures or a GC (a warm one
        only once its reset ran: until then its last task's microtasks may still run)."""
        return [
            i
            for i in (self.spare, self.warm)
            if i is not None and not i.tainted and not i.needs_reset
        ]

    async def collect(self) -> tuple[HeapFigures, HeapFigures]:
        """A full GC in every idle isolate; their heaps, summed, before and after. The
        warm one is reset first (its last task's state is garbage only then); one that
        refuses or does not answer is closed."""
        if self.warm is not None and not await reset(self.warm):
            self.warm.close()
            self.warm = self.warm_key = None
        live = self.live()
        before = _sum_heaps(live)
        for instance in live:
            instance.collect()
        return before, _sum_heaps(live)

    def close(self) -> None:
        for instance in (self.spare, self.warm):
            if instance is not None:
                with contextlib.suppress(Exception):
                    instance.close()
        self.spare = self.warm = None


def _sum_heaps(instances: list[Instance]) -> HeapFigures:
    total = HeapFigures()
    for instance in instances:
        reading = _heap(instance)
        if reading is not None:
            total.used += reading["used"]
            total.total += reading["total"]
            total.limit += reading["limit"]
    return total
