"""The stack's floor: the least any server built from Zako's own parts can cost per task.

`python -m bench.servers floor` serves `bench.Floor` on 127.0.0.1 (the handler below): a
grpc.aio server that parses each real `zako.v1` request, hands the task over a pipe to
one child process (`python -m bench.floor`), which runs it in one reused MiniRacer, and
answers with a `zako.v1` completed event:

    client ──Stream/Unary──▶ grpc.aio server ──[len][json]──▶ child: one MiniRacer, eval
                                  ▲                                     │
                                  └───────────[len][json]───────────────┘

Nothing else: no admission, no validation, no accepted or started event, no isolation
between tasks, no limits, no reset, no logs. The child waits for V8 on mini-racer's
fastest path (a blocking eval on its loop thread) and writes the answers of every frame a
read brought in one write. Whatever Zako costs above this line is what its features cost;
what this line costs above echo is the stack's (grpc.aio, a process hop, mini-racer).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import struct
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc

from bench.payloads import commonjs_expression, completed_result
from zako_sdk.proto.zako.v1 import executor_pb2 as pb

FLOOR_SERVICE = "bench.Floor"
_LEN = struct.Struct(">I")


def _frames(buffer: bytearray) -> list[Any]:
    """Take every whole `[len][json]` frame off the front of `buffer`."""
    out = []
    while len(buffer) >= _LEN.size:
        (size,) = _LEN.unpack_from(buffer)
        if len(buffer) < _LEN.size + size:
            break
        out.append(json.loads(bytes(buffer[_LEN.size : _LEN.size + size])))
        del buffer[: _LEN.size + size]
    return out


def _frame(value: Any) -> bytes:
    body = json.dumps(value).encode()
    return _LEN.pack(len(body)) + body


# ---- the child: one MiniRacer ------------------------------------------------------------


class _ChildReader(asyncio.Protocol):
    def __init__(self, done: asyncio.Future[None]) -> None:
        from py_mini_racer import MiniRacer

        self._racer = MiniRacer()  # inside the running loop: eval() blocks on its thread
        self._buffer = bytearray()
        self._done = done

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        answers = []
        for number, source, input_json in _frames(self._buffer):
            try:
                value = str(self._racer.eval(commonjs_expression(source, input_json)))
            except Exception as exc:
                value = json.dumps(f"error: {exc}")
            answers.append(_frame([number, value]))
        if answers:
            os.write(1, b"".join(answers))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_result(None)


async def child() -> int:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    await loop.connect_read_pipe(lambda: _ChildReader(done), os.fdopen(0, "rb", buffering=0))
    await done
    return 0


# ---- the server --------------------------------------------------------------------------


class _Child(asyncio.SubprocessProtocol):
    """The server's end of the pipe: futures by task id, resolved as answers come in."""

    def __init__(self) -> None:
        # By a number of the server's own: a client may send one task id many times.
        self.waiting: dict[int, asyncio.Future[str]] = {}
        self._numbers = itertools.count()
        self._buffer = bytearray()
        self.transport: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self.transport = transport

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd != 1:
            sys.stderr.buffer.write(data)
            return
        self._buffer += data
        for number, value in _frames(self._buffer):
            future = self.waiting.pop(number, None)
            if future is not None and not future.done():
                future.set_result(value)

    def run(self, task: pb.Task) -> asyncio.Future[str]:
        assert self.transport is not None
        future = asyncio.get_running_loop().create_future()
        number = next(self._numbers)
        self.waiting[number] = future
        stdin = self.transport.get_pipe_transport(0)
        assert isinstance(stdin, asyncio.WriteTransport)
        stdin.write(_frame([number, task.source, task.input_json]))
        return future


def floor_handler(worker: _Child) -> grpc.GenericRpcHandler:
    def completed(task_id: str, value: str) -> pb.SubmitResponse:
        return pb.SubmitResponse(
            task_id=task_id, completed=pb.Completed(result=completed_result(value))
        )

    async def stream(
        requests: AsyncIterator[pb.SubmitRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.SubmitResponse]:
        answers: asyncio.Queue[pb.SubmitResponse | None] = asyncio.Queue()
        pending = 0
        reading = True

        def answer(task_id: str, future: asyncio.Future[str]) -> None:
            nonlocal pending
            pending -= 1
            answers.put_nowait(completed(task_id, future.result()))
            if not reading and pending == 0:
                answers.put_nowait(None)

        async def read() -> None:
            nonlocal pending, reading
            async for request in requests:
                pending += 1
                task_id = request.task.id
                worker.run(request.task).add_done_callback(
                    lambda f, task_id=task_id: answer(task_id, f)
                )
            reading = False
            if pending == 0:
                answers.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (response := await answers.get()) is not None:
                yield response
        finally:
            reader.cancel()

    async def unary(request: pb.RunRequest, context: grpc.aio.ServicerContext) -> pb.RunResponse:
        value = await worker.run(request.task)
        return pb.RunResponse(
            task_id=request.task.id, completed=pb.Completed(result=completed_result(value))
        )

    return grpc.method_handlers_generic_handler(
        FLOOR_SERVICE,
        {
            "Stream": grpc.stream_stream_rpc_method_handler(
                stream,
                request_deserializer=pb.SubmitRequest.FromString,
                response_serializer=pb.SubmitResponse.SerializeToString,
            ),
            "Unary": grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=pb.RunRequest.FromString,
                response_serializer=pb.RunResponse.SerializeToString,
            ),
        },
    )


async def start_child() -> tuple[asyncio.SubprocessTransport, _Child]:
    """The child process and the server's end of its pipe (close the transport to stop it)."""
    loop = asyncio.get_running_loop()
    return await loop.subprocess_exec(_Child, sys.executable, "-m", "bench.floor", stderr=None)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(asyncio.run(child()))
