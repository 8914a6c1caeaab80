"""The parent's handle on one V8 worker process.

    pool ──send(run/cancel/gc/exit)──▶ stdin  ┌──────────────────────┐
                                              │ python -m            │
    pool ◀──on_event(started/log)──── pipes ◀─│  zako_server.worker  │
         ◀──done future / gc future───        └──────────────────────┘

The child is a fresh interpreter (exec, never fork of a process holding gRPC or V8
state). Its stdout is parsed as bytes arrive (worker_pipes.py) and each frame becomes a
future's result or a callback at once: no reader task and no StreamReader in between,
which cost a loop wake-up per frame. When the pipe ends and the process has exited,
whatever the worker held fails with `worker_lost`, so no task waits on a dead process.

Heartbeat (heartbeat.py): a ready worker that answers no ping for `heartbeat_timeout`
is stopped or hung, and it is killed.

Prefetch: a worker holds up to `1 + prefetch` run frames, each a `Slot` (slots.py): the
one it runs and the ones queued behind it on its pipe (the worker's own queue,
process.py). While the worker runs a task its next one is already in its pipe, so the
round trip between a done event and the next dispatch (parent wake-up, lease, frame,
child wake-up) no longer leaves it idle. Events are routed to slots by task id; the pool
never queues a frame whose id one of the worker's slots already has (ids are only unique
per tenant). A queued slot has not begun: if the worker is lost, it runs on another
worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Literal

import psutil

from zako_server import codec
from zako_server.protocol import (
    CancelFrame,
    DoneEvent,
    ExitFrame,
    FailureReason,
    Frame,
    GcEvent,
    GcFrame,
    HeapFigures,
    LogEvent,
    LogsEvent,
    ParentFrame,
    PongEvent,
    ReadyEvent,
    ReuseKey,
    RunFrame,
    StartedEvent,
    WithdrawFrame,
)
from zako_server.server.code_mirror import SourceMirror, units_of, without_tree
from zako_server.server.heartbeat import Heartbeat
from zako_server.server.slots import EventSink, Slot, lost_result, settle
from zako_server.server.worker_pipes import Pipes, Stdout

log = logging.getLogger("zako.pool")

# starting -> idle <-> busy -> stopping -> dead (any state may go straight to dead)
WorkerState = Literal["starting", "idle", "busy", "stopping", "dead"]


class WorkerHandle:
    """One child process: its pipes, its state and the slots (tasks) it holds."""

    def __init__(
        self,
        worker_id: str,
        on_exit: Callable[[WorkerHandle], None],
        heartbeat: tuple[float, float] = (2.0, 10.0),
        sources: SourceMirror | None = None,
        cpu: int | None = None,
        brief_wait: float | None = None,
    ) -> None:
        self.id = worker_id
        # The CPU the child pins itself to (worker_set.py says why), or None: unpinned.
        self.cpu = cpu
        # Settings.worker_brief_wait for the child (None: the child's own default).
        self.brief_wait = brief_wait
        # What the child holds of module texts (code_mirror.py); None: send them inline.
        self.sources = sources
        # (interval, timeout) in seconds.
        self.heartbeat = Heartbeat(self, *heartbeat)
        self.pid = 0
        self.v8_version = ""
        self.mini_racer_version = ""
        self.state: WorkerState = "starting"
        self.idle_since = time.monotonic()
        # The frames it holds, oldest (running or next to run) first.
        self.slots: list[Slot] = []
        self.tasks_run = 0
        self.last_heap: HeapFigures | None = None
        # (reuse, kind, hermetic) of the last task that may have left a warm isolate here.
        self.warm_key: ReuseKey | None = None
        self._ps: psutil.Process | None = None
        self.exit_expected = False
        self.broken = False
        # Set when the supervisor kills the worker on purpose, to explain the loss.
        self.kill_reason: tuple[FailureReason, str] | None = None
        self._on_exit = on_exit
        self._transport: asyncio.SubprocessTransport | None = None
        self._pipes: Pipes | None = None
        self._ready: asyncio.Future[None] | None = None
        self._gc_waiters: list[asyncio.Future[GcEvent]] = []
        self.exited = asyncio.Event()

    @property
    def alive(self) -> bool:
        return self.state != "dead"

    async def start(self, timeout: float) -> None:
        """Exec the child and wait for its ready frame (V8 warm)."""
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        read_fd, write_fd = os.pipe()  # both close-on-exec; the child gets write_fd as fd 1
        try:
            self._transport, pipes = await loop.subprocess_exec(
                lambda: Pipes(self),
                sys.executable,
                "-m",
                "zako_server.worker",
                *(() if self.cpu is None else ("--cpu", str(self.cpu))),
                *(() if self.brief_wait is None else ("--brief-wait", repr(self.brief_wait))),
                stdin=asyncio.subprocess.PIPE,
                stdout=write_fd,
                stderr=None,
                # A worker must not die with the server's terminal session before the
                # server drains it; the server itself ends every worker on shutdown.
                start_new_session=True,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._pipes = pipes
        self.pid = self._transport.get_pid()
        stdout = os.fdopen(read_fd, "rb", buffering=0)
        try:
            pipes.stdout, _ = await loop.connect_read_pipe(lambda: Stdout(pipes), stdout)
        except BaseException:
            stdout.close()
            pipes.stdout_lost()  # so the exit alone marks the worker dead
            self.kill()
            raise
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except BaseException:
            self.kill()
            raise
        self.state = "idle"
        self.idle_since = time.monotonic()
        self.heartbeat.start(self.idle_since)

    def _send_nowait(self, frame: ParentFrame) -> None:
        """Write a small frame unless the pipe is full or gone: a worker that does not
        read its stdin does not answer either, which the heartbeat then notices."""
        transport, pipes = self._transport, self._pipes
        stdin = None if transport is None else transport.get_pipe_transport(0)
        if stdin is None or pipes is None or pipes.paused or stdin.is_closing():
            return
        stdin.write(codec.encode(frame))  # type: ignore[attr-defined]

    @property
    def running(self) -> Slot | None:
        """The slot the worker runs (or will run next), if any."""
        return self.slots[0] if self.slots else None

    def slot_of(self, frame: RunFrame) -> Slot | None:
        for slot in self.slots:
            if slot.frame is frame:
                return slot
        return None

    def can_queue(self, task_id: str | None, depth: int, recent_s: float, now: float) -> bool:
        """Whether a frame (with `task_id`, if known) may wait behind this busy worker's
        tasks: a free place among its `depth` slots, and a running task that began at
        most `recent_s` ago (or is about to begin). A task queued behind one that has run
        long would wait for however long that one still runs, while another worker may
        free up sooner: only short tasks gain from prefetch, and a long one shows itself."""
        slots = self.slots
        if self.state != "busy" or self.broken or not slots or len(slots) >= depth:
            return False
        head = slots[0]
        if head.began and now - head.began_at > recent_s:
            return False
        return all(slot.frame.id != task_id for slot in slots)

    def run(
        self, frame: RunFrame, sink: EventSink, on_begin: Callable[[], None] | None = None
    ) -> Slot:
        """Send a task (to run now, or after the ones this worker holds); the slot's
        `result` resolves with its done event (or a lost one). Synchronous, so the slot
        exists once the frame is written: a caller cancelled while the pipe drains
        (`drained`) still finds it to cancel. ConnectionError: nothing was sent."""
        assert self.state in {"idle", "busy"}, f"worker {self.id} is {self.state}"
        loop = asyncio.get_running_loop()
        slot = Slot(frame, sink, loop.create_future(), loop.create_future(), on_begin)
        mirror = self.sources
        if mirror is None:
            wired = without_tree(frame)
        else:
            # Derived only when a frame goes behind others (prefetch), not on every dispatch.
            pinned = (
                frozenset().union(*(units_of(s.wired) for s in self.slots if s.wired))
                if self.slots
                else None
            )
            wired = mirror.wire(frame, pinned)
        slot.wired = wired
        self._write(wired)
        self.slots.append(slot)
        self.state = "busy"
        return slot

    async def drained(self) -> None:
        """Wait while the pipe to the child is full (ConnectionError: it was lost)."""
        pipes = self._pipes
        if pipes is not None and pipes.paused:
            await pipes.drain()

    def withdraw(self, slot: Slot, why: str) -> None:
        """Take back a queued task (WithdrawFrame): unless the worker began it already,
        its done event then comes with no started event."""
        if slot.began or slot.done.done() or slot.withdrawn is not None:
            return
        slot.withdrawn = why
        with contextlib.suppress(ConnectionError):
            self._write(WithdrawFrame(slot.frame.id))

    async def cancel(self, frame: RunFrame) -> None:
        if self.slot_of(frame) is not None:
            await self._send(CancelFrame(frame.id))

    async def gc(self) -> GcEvent:
        """Ask for a full collection; a busy worker answers after its task."""
        waiter: asyncio.Future[GcEvent] = asyncio.get_running_loop().create_future()
        self._gc_waiters.append(waiter)
        await self._send(GcFrame())
        return await waiter

    def finish(self, slot: Slot) -> None:
        """The pool took `slot`'s done event (or never got to send it): the worker may
        take another task in its place."""
        try:
            self.slots.remove(slot)
        except ValueError:
            return
        self.tasks_run += 1
        gone = self._transport is None or self._transport.get_returncode() is not None
        if self.state == "busy" and not self.slots and not gone and not self.broken:
            self.state = "idle"
            self.idle_since = time.monotonic()

    def mark_broken(self) -> None:
        """Never hand this worker out again: it was lost (its pipe failed or it died)
        but the exit may not have been reaped yet, so its state alone cannot tell."""
        self.broken = True
        self.kill()

    async def stop(self, timeout: float) -> None:
        """Ask the child to exit; kill it if it does not within `timeout`."""
        if self.state == "dead":
            return
        self.state = "stopping"
        with contextlib.suppress(Exception):
            await self._send(ExitFrame())
        try:
            await asyncio.wait_for(self.exited.wait(), timeout)
        except asyncio.TimeoutError:
            self.kill()
            await self.exited.wait()

    def kill(self, reason: tuple[FailureReason, str] | None = None) -> None:
        """SIGKILL the child (it ignored a cancel, ran away, or the server is leaving).

        `reason` is (failure reason, message) for the task it held, when the kill is
        the supervisor's verdict on that task (e.g. out of memory) rather than a crash.
        """
        if reason is not None and self.kill_reason is None:
            self.kill_reason = reason
        if self._transport is not None and self._transport.get_returncode() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def rss(self) -> int:
        """Resident memory of the child; 0 once it is gone. The psutil handle is kept:
        building one per reading was 7 % of the server's busy time under load."""
        try:
            if self._ps is None or self._ps.pid != self.pid:
                self._ps = psutil.Process(self.pid)
            return int(self._ps.memory_info().rss)
        except (psutil.Error, ValueError):
            return 0

    async def _send(self, frame: ParentFrame) -> None:
        self._write(frame)
        await self.drained()

    def _write(self, frame: ParentFrame) -> None:
        transport, pipes = self._transport, self._pipes
        stdin = None if transport is None else transport.get_pipe_transport(0)
        if (
            stdin is None
            or pipes is None
            or stdin.is_closing()
            or transport is None
            or transport.get_returncode() is not None
        ):
            raise ConnectionError(f"worker {self.id} is not running")
        stdin.write(codec.encode(frame))  # type: ignore[attr-defined]
        if stdin.is_closing():  # the write found the pipe broken (the child died)
            raise ConnectionError(f"worker {self.id}: its stdin pipe is closed")

    def _dispatch(self, event: Frame) -> None:
        # Ordered by how often each arrives.
        if isinstance(event, (LogsEvent, LogEvent, StartedEvent)):
            slot = self._slot_by_id(event.id)
            if slot is not None:
                if isinstance(event, StartedEvent) and not slot.began:
                    slot.began, slot.began_at = True, time.monotonic()
                    if slot.on_begin is not None:
                        slot.on_begin()
                slot.sink(event)
        elif isinstance(event, PongEvent):
            self.heartbeat.last_pong = time.monotonic()
        elif isinstance(event, DoneEvent):
            slot = self._slot_by_id(event.id)
            if slot is not None and not slot.done.done():
                self.last_heap = event.heap or self.last_heap
                if self.sources is not None:
                    self.sources.finished(event)
                settle(slot, event)
        elif isinstance(event, ReadyEvent):
            self.v8_version = event.v8_version
            self.mini_racer_version = event.mini_racer_version
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(None)
        elif isinstance(event, GcEvent):
            if self._gc_waiters:
                waiter = self._gc_waiters.pop(0)
                if not waiter.done():
                    waiter.set_result(event)
        else:
            log.warning("worker %s sent a %s, which only a parent sends", self.id, event)

    def _slot_by_id(self, task_id: str) -> Slot | None:
        for slot in self.slots:
            if slot.frame.id == task_id:
                return slot
        return None

    def _mark_dead(self, why: str, code: int | None) -> None:
        expected = self.exit_expected = self.state == "stopping"
        self.state = "dead"
        self.heartbeat.stop()
        if not expected:
            detail = f"{why} (exit code {code})"
            if code is not None and code < 0:
                detail = f"{why}: killed by signal {-code}"
            running = self.running
            if running is not None:
                log.warning(
                    "worker %s (pid %s) lost while running task %s: %s",
                    self.id,
                    self.pid,
                    running.frame.id,
                    detail,
                )
            why = detail
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(ConnectionError(f"worker {self.id}: {why}"))
            self._ready.exception()  # mark retrieved: start() reports it
        for slot in self.slots:
            if slot.done.done():
                continue
            task_id = slot.frame.id
            # The supervisor's verdict is on the task it ran; one queued behind it is lost
            # before it began, and the pool runs it elsewhere.
            if self.kill_reason is not None and slot.began:
                result = lost_result(task_id, self.kill_reason[1], self.kill_reason[0])
            else:
                result = lost_result(task_id, f"worker {self.id} (pid {self.pid}) was lost: {why}")
            settle(slot, result)
        for waiter in self._gc_waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionError(f"worker {self.id} exited"))
                waiter.exception()
        self._gc_waiters.clear()
        self.exited.set()
        self._on_exit(self)
