"""The parent's heartbeat to one worker process.

Every `interval` a PingFrame goes to a ready worker, idle or busy (its loop answers while
task code runs in V8). No answer for `timeout`: it is stopped (SIGSTOP) or hung, and it
is killed, so its task ends WORKER_LOST, or runs on another worker if it never began,
and the pool replaces it.

Its own concern: a worker's liveness is judged apart from its tasks. The handle arms the
heartbeat once the worker is ready, records each pong, and stops it when the worker is
gone; the pings, their timer and the verdict are here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from zako_server.protocol import FailureReason, PingFrame

if TYPE_CHECKING:
    from zako_server.server.worker_handle import WorkerHandle

log = logging.getLogger("zako.pool")


class Heartbeat:
    """Pings to one worker on a loop timer, and its kill when they go unanswered."""

    def __init__(self, worker: WorkerHandle, interval: float, timeout: float) -> None:
        self.worker = worker
        # In seconds.
        self.interval, self.timeout = interval, timeout
        self.last_pong = time.monotonic()
        self._ping_seq = 0
        self._beat_timer: asyncio.TimerHandle | None = None

    def start(self, now: float) -> None:
        """The worker is ready (`now`, monotonic): the first ping goes one interval on."""
        self.last_pong = now
        self._beat_timer = asyncio.get_running_loop().call_later(self.interval, self._beat)

    def stop(self) -> None:
        """The worker is gone: no more pings."""
        if self._beat_timer is not None:
            self._beat_timer.cancel()
            self._beat_timer = None

    def _beat(self) -> None:
        """One heartbeat: judge the last answer, then ping again (a loop timer, not a
        task, as the pool's memory check)."""
        self._beat_timer = None
        worker = self.worker
        if worker.state in {"dead", "stopping"}:
            return
        silent = time.monotonic() - self.last_pong
        if silent > self.timeout:
            log.error(
                "worker %s (pid %s) answered no heartbeat for %.1fs; killing it",
                worker.id,
                worker.pid,
                silent,
            )
            worker.kill(
                (
                    FailureReason.WORKER_LOST,
                    f"worker {worker.id} (pid {worker.pid}) answered no heartbeat for "
                    f"{silent:.1f}s (stopped or hung) and was replaced",
                )
            )
            return
        self._ping_seq += 1
        worker._send_nowait(PingFrame(self._ping_seq))
        self._beat_timer = asyncio.get_running_loop().call_later(self.interval, self._beat)
