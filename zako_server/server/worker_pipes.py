"""The child's pipes, as the parent's event loop sees them.

    worker stdout ──▶ Stdout.data_received ──▶ Pipes.frames ──▶ WorkerHandle._dispatch
    worker stdin  ◀── WorkerHandle writes (held back while the pipe is full: drain)
    process exit + stdout EOF ──▶ WorkerHandle._mark_dead

Its own concern: this is asyncio plumbing (protocols, transports, flow control, frame
parsing and a corrupt stream), not what the handle does with a frame. Frames are parsed
in the read callback and handed on in the same pass, so no reader task or StreamReader
stands between a worker's event and the future or callback it settles.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from zako_server import codec

if TYPE_CHECKING:
    from zako_server.server.worker_handle import WorkerHandle

log = logging.getLogger("zako.pool")


class Pipes(asyncio.SubprocessProtocol):
    """The child's pipes. Frames on stdout go straight to the handle's `_dispatch` from
    the read callback: stdout is a pipe of our own read by `Stdout`, because a
    subprocess transport's pipes hand data over one loop pass later (call_soon), a pass
    per frame. Writes to stdin are held back while the pipe is full. The worker is dead
    once the process has exited *and* stdout has ended, as reading to EOF and then
    waiting for the process was."""

    def __init__(self, handle: WorkerHandle) -> None:
        self.handle = handle
        self.parser = codec.FrameParser()
        self.why = "worker process exited"
        self.corrupt = False
        self.paused = False
        self.exited = False
        self.stdout_ended = False
        self.stdout: asyncio.ReadTransport | None = None
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._transport: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def frames(self, data: bytes) -> None:
        if self.corrupt:
            return
        try:
            messages = self.parser.feed(data)
        except codec.ProtocolError as exc:
            self._corrupt(str(exc))
            return
        for body in messages:
            try:
                self.handle._dispatch(codec.decode(body))
            except codec.BadFrame as exc:  # the stream is intact: skip just this one
                log.error("worker %s sent a bad frame: %s", self.handle.id, exc)
            except codec.ProtocolError as exc:
                self._corrupt(str(exc))
                return
            except Exception:  # a fault handling one frame must not lose the next ones
                log.exception("worker %s: error handling a frame", self.handle.id)

    def stdout_lost(self) -> None:
        if self.parser.pending and not self.corrupt:
            self._corrupt("stream ended inside a frame")
        self.stdout_ended = True
        self._maybe_dead()

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 0:
            self._wake_drainers(exc or ConnectionResetError("worker stdin closed"))

    def _corrupt(self, why: str) -> None:
        self.corrupt = True
        self.why = f"worker sent a corrupt frame: {why}"
        log.error("worker %s: %s", self.handle.id, self.why)
        self.handle.kill()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake_drainers(None)

    async def drain(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        await waiter

    def _wake_drainers(self, exc: Exception | None) -> None:
        for waiter in self._drain_waiters:
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(ConnectionError(str(exc) or "worker pipe lost"))
        self._drain_waiters.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        """The process has exited and its stdin is closed."""
        self._wake_drainers(ConnectionResetError("worker exited"))
        self.exited = True
        self._maybe_dead()

    def _maybe_dead(self) -> None:
        if not (self.exited and self.stdout_ended):
            return
        transport = self._transport
        code = None if transport is None else transport.get_returncode()
        if transport is not None:
            transport.close()
        self.handle._mark_dead(self.why, code)


class Stdout(asyncio.Protocol):
    """The read end of the child's stdout: bytes to `Pipes.frames` in the same pass."""

    def __init__(self, pipes: Pipes) -> None:
        self.pipes = pipes

    def data_received(self, data: bytes) -> None:
        self.pipes.frames(data)

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.pipes.stdout_lost()
