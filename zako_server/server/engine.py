"""The life of one task, from acceptance to its single terminal event.

    submit(job) ─▶ registry (id unique) ─▶ admission.enqueue ─▶ Accepted
                                                   │
                      run(): await lease ─▶ pool.run ─▶ Started, Log* ─▶ terminal
                                                   │
    cancel(id) ─ queued: leave the line ───────────┤─▶ Cancelled
               └ running: pool.cancel (kill after grace)

    submit(job), hermetic ─ held in the action cache ─▶ Accepted, its logs, terminal (cached)
                          ├ an identical task runs ──▶ join: wait, then its outcome (cached)
                          └ else: lead ─▶ as above ─▶ store the outcome, wake the joiners

`TaskRecord.finish` (records.py) is the only way to emit a terminal event; it works once, so
every path (completion, failure, cancel, worker loss, shutdown) ends a task exactly
once; the lease is released in the same `finally`. Events are `zako.v1` messages (the
shared language), but nothing here imports gRPC. What each end says is built in
endings.py; how a task leads, joins and settles a flight of the action cache, in flights.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Coroutine
from typing import Any

from opentelemetry import trace

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_server.protocol import LogEvent, LogsEvent, StartedEvent
from zako_server.server.action_cache import ActionCache, Flight, Outcome
from zako_server.server.admission import Admission
from zako_server.server.endings import (
    finish_cached,
    finish_cancelled,
    finish_failed,
    finish_from_worker,
    finish_internal,
)
from zako_server.server.errors import (
    DuplicateTask,
    QueueDeadlineExceeded,
    TaskNotFound,
    TaskRejection,
)
from zako_server.server.flights import abandon, join, lead, settle
from zako_server.server.pool import Pool
from zako_server.server.records import Counters, Emit, Gate, TaskRecord
from zako_server.server.stats import Histogram
from zako_server.server.transforms import Answers, TransformPool
from zako_server.server.validation import Job
from zako_server.server.worker_handle import WorkerHandle

log = logging.getLogger("zako.engine")

_NO_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext()


class Engine:
    """Owns the registry of live tasks and drives each through admission and the pool."""

    def __init__(
        self,
        admission: Admission,
        pool: Pool,
        tracer: trace.Tracer | None = None,
        max_event_bytes: int = 64 << 20,
        transforms: TransformPool | None = None,
        action_cache: ActionCache | None = None,
    ) -> None:
        self.admission = admission
        # Outcomes of hermetic tasks (None: no cache, every task runs).
        self.action_cache = action_cache
        # ES modules and TypeScript are transformed while the task waits for admission,
        # in the transform stage's own processes (None: files go to the worker as text).
        self.transforms = transforms
        # The message limit: no event the engine builds may be larger.
        self.max_event_bytes = max_event_bytes
        self.pool = pool
        self.tracer = tracer or trace.NoOpTracerProvider().get_tracer("zako_server")
        # With tracing off, even no-op spans cost ~4 context-manager calls per span.
        self._traced = not isinstance(self.tracer, trace.NoOpTracer)
        self.counters = Counters()
        self.run_time = Histogram()
        # Keyed by (tenant, id): ids are a tenant's own namespace (#12), so one tenant
        # can neither see another's live ids (through ALREADY_EXISTS or
        # PERMISSION_DENIED) nor be kept from using an id another tenant uses.
        self._tasks: dict[tuple[str, str], TaskRecord] = {}
        # Tasks waiting for their stream's backpressure to lift (not queued, no lease).
        self.held = 0

    def submit(
        self,
        job: Job,
        owner: object,
        emit: Emit,
        tenant: str = "anonymous",
        gate: Gate | None = None,
        terminal_only: bool = False,
    ) -> TaskRecord:
        """Accept a validated task or raise TaskRejection (the caller reports it).

        `gate`: the task starts only while it is open (see `_await_gate`).
        `terminal_only` (or the task's own Task.terminal_only): `emit` gets no accepted
        or started event, which are then never built (a unary Run has no use for them)."""
        record, body = self._accept(job, owner, emit, tenant, gate, terminal_only)
        record.runner = asyncio.create_task(body, name=f"zako-task-{record.task_id}")
        record.runner.add_done_callback(lambda _: self._reap(record))
        return record

    async def run(self, job: Job, owner: object, emit: Emit, tenant: str) -> TaskRecord:
        """Accept a task and run it to its end in the caller's own task (a unary Run):
        no runner task to start and no wake-up to learn of its end, two loop passes
        fewer per call. `emit` gets its logs and its terminal event only.

        A cancel of the task while it waits in line cancels the caller's task; the
        body ends the task Cancelled and the caller answers with that. A cancel of the
        caller itself (the call went away) ends the task the same way, then goes on."""
        record, body = self._accept(job, owner, emit, tenant, None, True)
        caller = asyncio.current_task()
        record.runner = caller
        try:
            await body
        finally:
            self._reap(record)
        if caller is None:
            return record
        if sys.version_info < (3, 11):  # no count of cancel requests: read the outcome
            terminal = record.terminal
            if terminal is not None and terminal.HasField("cancelled") and not record.cancel_reason:
                raise asyncio.CancelledError  # the call itself was cancelled
        elif caller.cancelling():
            if not record.cancel_reason:
                raise asyncio.CancelledError  # the call itself was cancelled
            caller.uncancel()  # ours (a cancel by id, or shutdown): answered, not raised
        return record

    def _accept(
        self,
        job: Job,
        owner: object,
        emit: Emit,
        tenant: str,
        gate: Gate | None,
        terminal_only: bool,
    ) -> tuple[TaskRecord, Coroutine[Any, Any, None]]:
        """Register an accepted task and tell its client: the record, and the body that
        runs it (or answers it from the action cache), for the caller to run."""
        live = self._tasks.get((tenant, job.task_id))
        if live is not None:
            duplicate = DuplicateTask(
                f"task.id {job.task_id!r} is already queued or running", field="task.id"
            )
            duplicate.same_stream = live.owner is owner
            raise duplicate
        record = TaskRecord(
            job, owner, emit, tenant, gate=gate, terminal_only=terminal_only or job.terminal_only
        )
        cache = self.action_cache
        key = None if cache is None else cache.key(job, tenant, job.cache_policy)
        if key is not None and cache is not None and job.cache_policy != pb.CACHE_POLICY_REFRESH:
            # Answered without admission: a hit needs no worker, a joiner holds no lease.
            outcome = cache.lookup(key)
            flight = None if outcome is not None else cache.flight(key)
            if outcome is not None or flight is not None:
                return self._start(record, 0), self._answer(record, key, outcome, flight)
        deadline = None if job.queue_timeout_s is None else time.monotonic() + job.queue_timeout_s
        record.ticket, position = self.admission.enqueue(
            job.task_id,
            tenant=tenant,
            priority=job.priority,
            request=job.request,
            size_bytes=job.size_bytes,
            deadline=deadline,
        )
        if key is not None:
            assert cache is not None
            lead(cache, record, key)
        return self._start(record, position), self._run(record)

    def _start(self, record: TaskRecord, position: int) -> TaskRecord:
        """Register an accepted task and tell its client."""
        self._tasks[record.tenant, record.task_id] = record
        self.counters.accepted += 1
        if not record.terminal_only:
            record.emit(record.event(accepted=pb.Accepted(queue_position=position)))
        return record

    def _reap(self, record: TaskRecord) -> None:
        """After the runner: a runner cancelled before its first step never ran its own
        `finally` (a coroutine that has not started cannot catch), so whatever it holds
        is given back here and the task still gets its one terminal event."""
        if record.ticket is not None:
            self.admission.withdraw(record.ticket)
            self.admission.release(record.ticket)
        if record.terminal is None:
            finish_cancelled(record, self.counters)
        if record.cache_key is not None:
            settle(self.action_cache, record)
        if self._tasks.get((record.tenant, record.task_id)) is record:
            del self._tasks[record.tenant, record.task_id]

    async def _answer(
        self, record: TaskRecord, key: str, outcome: Outcome | None, flight: Flight | None
    ) -> None:
        """A task answered without running: from the cache (`outcome`), or by joining
        an identical task in flight. If that one's outcome cannot be shared (it timed
        out, was cancelled...), the joiner joins whoever leads next, or runs itself:
        a joiner is never failed for its leader's sake."""
        cache = self.action_cache
        assert cache is not None
        try:
            outcome = await join(cache, key, outcome, flight)
            if outcome is not None:
                # Backpressure as for any task: no events into a full stream's outbox.
                if record.gate is not None and not record.gate.is_open:
                    await record.gate.wait_open()
                finish_cached(record, self.counters, outcome)
                return
            self._readmit(record)  # accepted already, as a joiner
        except asyncio.CancelledError:
            finish_cancelled(record, self.counters)
            return
        except TaskRejection as exc:
            finish_failed(
                record,
                self.counters,
                pb.FAILURE_REASON_DEADLINE_EXCEEDED,
                pb.JsError(
                    name="DeadlineExceeded",
                    message=f"the identical task this one waited for could not share its "
                    f"outcome, and this one could not take a place in line: {exc.message}",
                ),
            )
            return
        except Exception as exc:
            finish_internal(record, self.counters, exc)
            return
        lead(cache, record, key)
        await self._run(record)

    def count_rejection(self, exc: TaskRejection, tenant: str = "anonymous") -> None:
        self.counters.rejected[exc.code] += 1
        self.admission.note_rejection(tenant)

    def cancel(
        self,
        task_id: str,
        reason: str,
        owner: object | None = None,
        tenant: str = "anonymous",
        any_tenant: bool = False,
    ) -> int:
        """Cancel a queued or running task; returns its pb.TaskState before the cancel.

        The id is looked up among `tenant`'s tasks; `owner` limits it to one stream's.
        `any_tenant` (the admin role): failing that, the one live task of any tenant
        with that id, if exactly one has it (with several, the id does not say which).
        """
        record = self._tasks.get((tenant, task_id))
        if any_tenant and (record is None or record.state == "done"):
            others = [r for (_, i), r in self._tasks.items() if i == task_id and r.state != "done"]
            record = others[0] if len(others) == 1 else None
        if (
            record is None
            or record.state == "done"
            or (owner is not None and record.owner is not owner)
        ):
            raise TaskNotFound(f"no queued or running task with id {task_id!r}")
        # Sent to a worker but queued behind its task (prefetch): not running yet.
        running = record.state == "running" and record.started_mono
        previous = pb.TASK_STATE_RUNNING if running else pb.TASK_STATE_QUEUED
        self._cancel(record, reason or "cancelled by client")
        return previous

    def cancel_owned_by(self, owner: object, reason: str) -> None:
        for record in [r for r in self._tasks.values() if r.owner is owner]:
            self._cancel(record, reason)

    def cancel_all(self, reason: str) -> None:
        for record in list(self._tasks.values()):
            self._cancel(record, reason)

    def live_count(self) -> int:
        return len(self._tasks)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no task is queued or running; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            pending = [r.finished.wait() for r in list(self._tasks.values())]
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*pending), max(deadline - time.monotonic(), 0.0)
                )
        return not self._tasks

    def _cancel(self, record: TaskRecord, reason: str) -> None:
        if record.state == "done" or record.cancel_reason:
            return
        record.cancel_reason = reason
        if record.state == "queued" and record.runner is not None:
            record.runner.cancel()
        elif (
            record.state == "running"
            # By the frame, not the id alone: two tenants may both run an id (#12).
            and not self.pool.cancel(record.task_id, record.job.frame)
            and record.runner is not None
        ):
            record.runner.cancel()  # no worker holds it yet: it leaves the pool's line

    async def _run(self, record: TaskRecord) -> None:
        assert record.ticket is not None
        frame = record.job.frame
        # Files the transform stage already answered cost no task of their own (the
        # usual warm task); others are transformed while the task waits in line.
        prepare: asyncio.Future[tuple[Answers, Answers | None]] | None = None
        if self.transforms is not None:
            ready = self.transforms.ready_task(frame.modules, frame.digests, frame.tree_files)
            if ready is None:
                prepare = asyncio.ensure_future(
                    self.transforms.prepare_task(frame.modules, frame.digests, frame.tree_files)
                )
            else:
                frame.prepared, frame.tree_prepared = ready
        try:
            with self._span("zako.admission.wait", record):
                await self.admission.acquire(record.ticket)
                if record.gate is not None and not record.gate.is_open:
                    await self._await_gate(record, record.gate)
            if prepare is not None:
                frame.prepared, frame.tree_prepared = await prepare
            # "running" from here: a worker holds it or will (cancel goes through the
            # pool); its start time is the worker's started event (it may wait queued
            # behind another task on that worker, see pool.py).
            record.state = "running"
            job = record.job
            with self._span("zako.execute", record) as span:
                done = await self.pool.run(
                    job.frame,
                    lambda event, worker: self._on_worker_event(record, event, worker),
                    None
                    if job.queue_timeout_s is None
                    else record.accepted_mono + job.queue_timeout_s,
                )
                if span is not None:
                    span.set_attribute(
                        "zako.outcome", "completed" if done.reason is None else done.reason.value
                    )
            finish_from_worker(record, done, self.counters, self.run_time, self.max_event_bytes)
        except asyncio.CancelledError:
            finish_cancelled(record, self.counters)
        except QueueDeadlineExceeded as exc:
            finish_failed(
                record,
                self.counters,
                pb.FAILURE_REASON_DEADLINE_EXCEEDED,
                pb.JsError(name="DeadlineExceeded", message=str(exc)),
            )
        except Exception as exc:
            finish_internal(record, self.counters, exc)
        finally:
            if prepare is not None and not prepare.done():
                prepare.cancel()
            self.admission.release(record.ticket)
            self._tasks.pop((record.tenant, record.task_id), None)
            if record.terminal is None:  # defensive: never leave a task without an end
                finish_cancelled(record, self.counters)
            if record.cache_key is not None:
                settle(self.action_cache, record)

    async def _await_gate(self, record: TaskRecord, gate: Gate) -> None:
        """Backpressure: the task's stream holds more unread events than it may, so the
        task must not start (its events would add to them). It hands its lease back,
        so a client that does not read holds no worker, and takes a new place in line
        once the stream has room again (keeping its queue deadline). A task leading a
        flight gives it up: identical tasks of other streams must not wait on a client
        that does not read (one of them leads instead; this one still stores its own)."""
        abandon(self.action_cache, record)
        while not gate.is_open:
            assert record.ticket is not None
            self.admission.release(record.ticket)
            self.held += 1
            try:
                await gate.wait_open()
            finally:
                self.held -= 1
            try:
                self._readmit(record)
            except TaskRejection as exc:
                raise QueueDeadlineExceeded(
                    f"the task could not take its place in line again after its stream's "
                    f"backpressure: {exc.message}"
                ) from exc
            await self.admission.acquire(record.ticket)

    def _readmit(self, record: TaskRecord) -> None:
        """Give an accepted task a new place in line (a joiner whose leader could not
        share, or a task its stream's backpressure held), keeping its queue deadline:
        TaskRejection if it has passed or the queue has no room."""
        job = record.job
        deadline = (
            None if job.queue_timeout_s is None else record.accepted_mono + job.queue_timeout_s
        )
        record.ticket, _ = self.admission.enqueue(
            job.task_id,
            tenant=record.tenant,
            priority=job.priority,
            request=job.request,
            size_bytes=job.size_bytes,
            deadline=deadline,
            readmit=True,
        )

    def _span(
        self, name: str, record: TaskRecord
    ) -> contextlib.AbstractContextManager[trace.Span | None]:
        if not self._traced:
            return _NO_SPAN
        return self.tracer.start_as_current_span(
            name, attributes={"zako.task_id": record.task_id, "zako.tenant": record.tenant}
        )

    def _on_worker_event(
        self, record: TaskRecord, event: StartedEvent | LogsEvent | LogEvent, worker: WorkerHandle
    ) -> None:
        if record.terminal is not None:
            return
        if isinstance(event, LogsEvent):
            record.worker_lines(event.lines)
        elif isinstance(event, LogEvent):
            record.worker_lines([[event.level, event.message, event.ts]])
        else:
            record.started_wall, record.started_mono = time.time(), time.monotonic()
            record.worker_id = worker.id
            if not record.terminal_only:
                record.emit(
                    record.event(started=pb.Started(worker_id=worker.id, worker_pid=worker.pid))
                )
