"""Baseline servers, run as subprocesses: `python -m bench.servers echo|naive|floor`.

echo   `bench.Echo`: the transport's ceiling. grpc.aio with generic handlers and identity
       (bytes) serializers, no new protos. Answers each request with the bytes of a real
       `zako.v1` message (payloads.messages()):
         Unary    one RunRequest's worth in, one RunResponse's worth out
         Stream   bidi; per request one SubmitResponse (completed)
         Stream3  bidi; per request accepted, started, completed — Zako's three events
naive  `bench.Naive/Run`: the design Zako replaces. A unary grpc.aio server that parses
       a real RunRequest and runs the task in a fresh MiniRacer per request, in the
       default thread pool; no isolation beyond the instance, no limits, no queue.
floor  `bench.Floor/Stream|Unary`: the stack's floor (bench/floor.py), each task over a
       pipe to one child process with one reused MiniRacer, none of Zako's features.

Each prints `bench-server KIND listening on 127.0.0.1:PORT` once it serves, and stops on
SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Sequence

import grpc

from bench import floor
from bench.payloads import commonjs_expression, completed_result, messages
from zako_sdk.proto.zako.v1 import executor_pb2 as pb

ECHO_SERVICE = "bench.Echo"
NAIVE_SERVICE = "bench.Naive"
_OPTIONS = [
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
]


def echo_handler() -> grpc.GenericRpcHandler:
    msgs = messages()

    async def unary(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return msgs.run_response

    async def stream(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        async for _ in requests:
            yield msgs.completed

    async def stream3(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        async for _ in requests:
            yield msgs.accepted
            yield msgs.started
            yield msgs.completed

    return grpc.method_handlers_generic_handler(
        ECHO_SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Stream": grpc.stream_stream_rpc_method_handler(stream),
            "Stream3": grpc.stream_stream_rpc_method_handler(stream3),
        },
    )


def run_fresh(source: str, input_json: str) -> str:
    """The naive design's whole engine: a fresh V8 per request, no limits."""
    from py_mini_racer import MiniRacer

    racer = MiniRacer()
    try:
        return str(racer.eval(commonjs_expression(source, input_json)))
    finally:
        racer.close()


def naive_handler(pool: concurrent.futures.ThreadPoolExecutor) -> grpc.GenericRpcHandler:
    async def run(request: pb.RunRequest, context: grpc.aio.ServicerContext) -> pb.RunResponse:
        loop = asyncio.get_running_loop()
        value = await loop.run_in_executor(
            pool, run_fresh, request.task.source, request.task.input_json
        )
        return pb.RunResponse(
            task_id=request.task.id, completed=pb.Completed(result=completed_result(value))
        )

    return grpc.method_handlers_generic_handler(
        NAIVE_SERVICE,
        {
            "Run": grpc.unary_unary_rpc_method_handler(
                run,
                request_deserializer=pb.RunRequest.FromString,
                response_serializer=pb.RunResponse.SerializeToString,
            ),
        },
    )


async def serve(kind: str, listen: str) -> int:
    pool = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="naive")
    floor_child: asyncio.SubprocessTransport | None = None
    extra = ""
    if kind == "echo":
        handler = echo_handler()
    elif kind == "naive":
        # mini-racer 0.14.1 initializes V8 on the first MiniRacer() of a process, and
        # racing that from several threads sometimes aborts the process (SIGTRAP,
        # "Check failed: !IsConfigurablePoolInitialized()"): initialize it once here.
        run_fresh("module.exports = 1", "")
        handler = naive_handler(pool)
        extra = f" ({pool._max_workers} threads)"
    else:
        floor_child, worker = await floor.start_child()
        handler = floor.floor_handler(worker)
        extra = " (1 child)"
    server = grpc.aio.server(options=_OPTIONS)
    server.add_generic_rpc_handlers([handler])
    port = server.add_insecure_port(listen)
    await server.start()
    host = listen.rsplit(":", 1)[0]
    print(f"bench-server {kind} listening on {host}:{port}{extra}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(grace=0.5)
    pool.shutdown(wait=False, cancel_futures=True)
    if floor_child is not None:
        floor_child.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.servers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", choices=["echo", "naive", "floor"])
    parser.add_argument("--listen", default="127.0.0.1:0")
    args = parser.parse_args(argv)
    if not args.listen.startswith("127.0.0.1:"):
        parser.error("benchmarks listen on 127.0.0.1 only")
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(serve(args.kind, args.listen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
