"""Bytes on the wire: a loopback TCP relay that counts what passes each way.

Why a relay and not the server's counters: "bytes sent per call" should be what really
crosses the network — the SDK's requests as gRPC frames them (HTTP/2 headers and frames,
uploads, FindMissingBlobs, pings), whatever the SDK decides to send — and a relay sees
all of it without touching the SDK or the server. The client connects to the relay's
port; the relay opens one connection to the target per client connection.

    async with ByteRelay(server.target) as relay:
        client = AsyncClient(relay.target)
        before = relay.up
        ...                               # calls
        sent = relay.up - before          # bytes client -> server
"""

from __future__ import annotations

import asyncio
import contextlib

from bench.common import LOOPBACK

_CHUNK = 1 << 16


class ByteRelay:
    """Forwards 127.0.0.1:<port> to `target`, counting bytes up (client to server) and
    down (server to client)."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self._host, self._port = host, int(port)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.up = 0
        self.down = 0
        self.port = 0

    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    async def __aenter__(self) -> ByteRelay:
        self._server = await asyncio.start_server(self._accept, LOOPBACK, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self._host, self._port)
        except OSError:
            writer.close()
            return
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer, upward=True)),
            asyncio.create_task(self._pipe(up_reader, writer, upward=False)),
        ]
        self._pipes.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pipes:
                task.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            self._pipes.difference_update(pipes)
            for w in (writer, up_writer):
                w.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upward: bool
    ) -> None:
        while data := await reader.read(_CHUNK):
            if upward:
                self.up += len(data)
            else:
                self.down += len(data)
            writer.write(data)
            await writer.drain()
