"""The baselines Zako is judged against, measured in the same run: (2a) a bare grpc.aio
echo service (the transport's ceiling), (2b) mini-racer in this process (the engine's
ceiling), (2c) a naive unary server with a fresh MiniRacer per request, (2d) the stack's
floor (bench/floor.py: grpc.aio, a pipe to one child process, one reused MiniRacer).

Each function starts the servers it needs (subprocesses on 127.0.0.1, port 0), drives a
bounded load from this process, stops them, and returns plain data for the report.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import time

import grpc

from bench.common import (
    CpuMeter,
    Load,
    ServerProcess,
    bench_server_argv,
    closed_loop,
    measured,
    parallel,
)
from bench.floor import FLOOR_SERVICE
from bench.params import STREAMS, UNARY_CONCURRENCY, Params
from bench.payloads import TRIVIAL_SOURCE, Messages, commonjs_expression, trivial_task
from bench.servers import ECHO_SERVICE, NAIVE_SERVICE
from zako_sdk.proto.zako.v1 import executor_pb2 as pb

# ---- (2a) the transport's ceiling ------------------------------------------------------


class BytesStream:
    """A bidi stream multiplexing many calls, shaped like the SDK's Submit stream: callers
    queue requests for one writer task; one reader task resolves their futures (the echo
    answers in order, so a FIFO of futures stands in for routing by task id)."""

    def __init__(self, channel: grpc.aio.Channel, method: str, responses_per_request: int) -> None:
        self._call = channel.stream_stream(method)()
        self._per = responses_per_request
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._waiting: collections.deque[asyncio.Future[bytes]] = collections.deque()
        self._writer = asyncio.create_task(self._write())
        self._reader = asyncio.create_task(self._read())

    async def call(self, payload: bytes) -> bytes:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self._outbox.put_nowait(payload)
        return await future

    async def _write(self) -> None:
        while (payload := await self._outbox.get()) is not None:
            await self._call.write(payload)
        await self._call.done_writing()

    async def _read(self) -> None:
        seen = 0
        try:
            while (message := await self._call.read()) is not grpc.aio.EOF:
                seen += 1
                if seen % self._per == 0:
                    self._waiting.popleft().set_result(message)
        except grpc.RpcError as exc:
            error = ConnectionError(f"echo stream broke: {exc.code()}")
            while self._waiting:
                self._waiting.popleft().set_exception(error)

    async def close(self) -> None:
        self._outbox.put_nowait(None)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._reader), 5.0)
        self._call.cancel()
        self._writer.cancel()
        self._reader.cancel()
        await asyncio.gather(self._writer, self._reader, return_exceptions=True)


async def echo_baseline(p: Params, msgs: Messages) -> dict[str, Load]:
    loads: dict[str, Load] = {}
    async with ServerProcess(bench_server_argv("echo"), "echo server") as server:
        meter = lambda: CpuMeter({"client": os.getpid(), "server": server.pid})  # noqa: E731
        channels = [grpc.aio.insecure_channel(server.target) for _ in range(STREAMS)]
        try:
            unary = channels[0].unary_unary(f"/{ECHO_SERVICE}/Unary")

            async def one_stream(
                method: str, per: int, channel: grpc.aio.Channel, count: int, window: int, name: str
            ) -> Load:
                stream = BytesStream(channel, f"/{ECHO_SERVICE}/{method}", per)
                try:
                    await closed_loop(
                        "warmup",
                        lambda _: stream.call(msgs.submit_request),
                        count=p.warmup,
                        concurrency=window,
                        seconds=5,
                    )
                    return await closed_loop(
                        name,
                        lambda _: stream.call(msgs.submit_request),
                        count=count,
                        concurrency=window,
                        seconds=p.echo_seconds,
                    )
                finally:
                    await stream.close()

            loads["echo_stream"] = await measured(
                one_stream("Stream", 1, channels[0], p.echo_count, p.window, "echo, one stream"),
                meter(),
            )
            loads["echo_stream3"] = await measured(
                one_stream(
                    "Stream3",
                    3,
                    channels[0],
                    p.echo_count,
                    p.window,
                    "echo, one stream, 3 replies/request",
                ),
                meter(),
            )
            per_stream = max(p.window // STREAMS, 1)
            loads["echo_streams8"] = await measured(
                parallel(
                    [
                        one_stream("Stream", 1, ch, p.echo_count // STREAMS, per_stream, "")
                        for ch in channels
                    ],
                    f"echo, {STREAMS} streams",
                    per_stream * STREAMS,
                ),
                meter(),
            )

            async def unary_call(_: int) -> bytes:
                return await unary(msgs.run_request, timeout=30)

            await closed_loop("warmup", unary_call, count=p.warmup, concurrency=1, seconds=5)
            loads["echo_unary"] = await measured(
                closed_loop(
                    "echo, unary, sequential",
                    unary_call,
                    count=p.unary_count * 4,
                    concurrency=1,
                    seconds=p.unary_seconds,
                ),
                meter(),
            )
            loads["echo_unary_c8"] = await measured(
                closed_loop(
                    f"echo, unary, {UNARY_CONCURRENCY} concurrent",
                    unary_call,
                    count=p.echo_count,
                    concurrency=UNARY_CONCURRENCY,
                    seconds=p.echo_seconds,
                ),
                meter(),
            )
        finally:
            for channel in channels:
                await channel.close()
    return loads


# ---- (2b) the engine's ceiling: mini-racer in this process -----------------------------


def inprocess_baseline(p: Params) -> dict[str, Load]:
    from py_mini_racer import MiniRacer

    def run(name: str, fresh: bool) -> Load:
        load = Load(name, 1)
        shared = None if fresh else MiniRacer()
        meter = CpuMeter({"client": os.getpid()})
        meter.start()
        start = time.perf_counter()
        deadline = start + p.inprocess_seconds
        try:
            for i in range(p.inprocess_count):
                if time.perf_counter() >= deadline:
                    break
                t0 = time.perf_counter()
                racer = MiniRacer() if fresh else shared
                assert racer is not None
                try:
                    value = racer.eval(commonjs_expression(TRIVIAL_SOURCE, str(i)))
                finally:
                    if fresh:
                        racer.close()
                load.latencies.append(time.perf_counter() - t0)
                if value != str(i + 1):
                    load.errors += 1
        finally:
            if shared is not None:
                shared.close()
        load.elapsed = time.perf_counter() - start
        load.cpu = meter.stop()
        load.other_cores = meter.other_cores
        return load

    run("warmup", fresh=True)
    return {
        "inprocess_fresh": run("mini-racer in-process, fresh instance per task", True),
        "inprocess_reused": run("mini-racer in-process, one reused instance", False),
    }


# ---- (2c) the naive design --------------------------------------------------------------


async def naive_baseline(p: Params) -> dict[str, Load]:
    loads: dict[str, Load] = {}
    async with ServerProcess(bench_server_argv("naive"), "naive server") as server:
        meter = lambda: CpuMeter({"client": os.getpid(), "server": server.pid})  # noqa: E731
        async with grpc.aio.insecure_channel(server.target) as channel:
            run = channel.unary_unary(
                f"/{NAIVE_SERVICE}/Run",
                request_serializer=pb.RunRequest.SerializeToString,
                response_deserializer=pb.RunResponse.FromString,
            )

            async def call(i: int) -> None:
                response = await run(pb.RunRequest(task=trivial_task(value=i)), timeout=30)
                if response.completed.result.value_json != str(i + 1):
                    raise AssertionError(f"naive server answered {response}")

            await closed_loop(
                "warmup", call, count=p.warmup, concurrency=UNARY_CONCURRENCY, seconds=5
            )
            loads["naive_unary"] = await measured(
                closed_loop(
                    "naive server, unary, sequential",
                    call,
                    count=p.unary_count,
                    concurrency=1,
                    seconds=p.unary_seconds,
                ),
                meter(),
            )
            loads["naive_unary_c8"] = await measured(
                closed_loop(
                    f"naive server, unary, {UNARY_CONCURRENCY} concurrent",
                    call,
                    count=p.naive_count,
                    concurrency=UNARY_CONCURRENCY,
                    seconds=p.naive_seconds,
                ),
                meter(),
            )
    return loads


# ---- (2d) the stack's floor ---------------------------------------------------------------


async def floor_baseline(p: Params, msgs: Messages) -> dict[str, Load]:
    """bench/floor.py driven like echo (the same request bytes, the same stream client),
    so its rows over echo's are what a process hop and mini-racer add to the transport."""
    loads: dict[str, Load] = {}
    async with ServerProcess(bench_server_argv("floor"), "floor server") as server:
        meter = lambda: CpuMeter(  # noqa: E731
            {"client": os.getpid(), "server": server.pid}, children_of={"workers": server.pid}
        )
        task = pb.SubmitRequest.FromString(msgs.submit_request).task
        expected = str(int(json.loads(task.input_json)) + 1)

        def check(value_json: str) -> None:
            if value_json != expected:
                raise AssertionError(f"the floor answered {value_json!r}, not {expected!r}")

        async with grpc.aio.insecure_channel(server.target) as channel:
            stream = BytesStream(channel, f"/{FLOOR_SERVICE}/Stream", 1)

            async def streamed(_: int) -> None:
                answer = pb.SubmitResponse.FromString(await stream.call(msgs.submit_request))
                check(answer.completed.result.value_json)

            try:
                await closed_loop(
                    "warmup", streamed, count=p.warmup, concurrency=p.window, seconds=5
                )
                loads["floor_stream"] = await measured(
                    closed_loop(
                        "stack floor, one stream",
                        streamed,
                        count=p.trivial_count,
                        concurrency=p.window,
                        seconds=p.trivial_seconds,
                    ),
                    meter(),
                )
            finally:
                await stream.close()
            unary = channel.unary_unary(f"/{FLOOR_SERVICE}/Unary")

            async def called(_: int) -> None:
                answer = pb.RunResponse.FromString(await unary(msgs.run_request, timeout=30))
                check(answer.completed.result.value_json)

            await closed_loop("warmup", called, count=p.warmup, concurrency=1, seconds=5)
            loads["floor_unary"] = await measured(
                closed_loop(
                    "stack floor, unary, sequential",
                    called,
                    count=p.unary_count,
                    concurrency=1,
                    seconds=p.unary_seconds,
                ),
                meter(),
            )
    return loads
