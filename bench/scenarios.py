"""The measurements of Zako itself: trivial tasks through the full stack, CPU-bound
scaling, memory, cold start and overload.

Each function starts the servers it needs (subprocesses on 127.0.0.1, port 0), drives a
bounded load from this process, stops them, and returns plain data for the report.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import itertools
import math
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.common import (
    CpuMeter,
    Load,
    ServerProcess,
    closed_loop,
    measured,
    parallel,
    percentile,
    zako_argv,
)
from bench.params import PACE_MS, STREAMS, UNARY_CONCURRENCY, Params
from bench.payloads import CPU_SOURCE, TRIVIAL_SOURCE, commonjs_expression
from bench.profiling import py_spy, summarize_profiles
from zako_sdk import AsyncClient, Overloaded, Result
from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_sdk.proto.zako.v1 import executor_pb2_grpc as pb_grpc


def sdk_client(target: str, **options: Any) -> AsyncClient:
    """An SDK client that never resubmits: a benchmark counts what the server did, so a
    rejection must reach us as one (clients without a `retry` option never resubmit)."""
    if "retry" in inspect.signature(AsyncClient).parameters:
        options.setdefault("retry", None)
    return AsyncClient(target, **options)


def _check(result: Result, expected: int) -> None:
    if result.value_json != str(expected):
        raise AssertionError(f"expected {expected}, got {result.value_json!r}")


# ---- (1) Zako, trivial tasks through the full stack --------------------------------------


def _zako_meter(server: ServerProcess) -> Callable[[], CpuMeter]:
    return lambda: CpuMeter(
        {"client": os.getpid(), "server": server.pid}, children_of={"workers": server.pid}
    )


def _sdk_op(
    numbers: Iterator[int], client: AsyncClient, unary: bool = False, cache: str | None = None
) -> Callable[[int], Awaitable[None]]:
    """The trivial task on `client`, each time with the next of `numbers` as its input.

    The server's action cache answers a hermetic task it has seen (issue 15), so every
    task here is new to it: `numbers` is shared by all the loads on one server. Each task
    is then a miss, the path of distinct tasks with the cache on (the key is computed and
    the outcome stored), unless `cache` says otherwise."""
    options = {} if cache is None else {"cache": cache}

    async def op(_: int) -> None:
        n = next(numbers)
        if unary:
            result = await client.run_unary(TRIVIAL_SOURCE, input=n, **options)
        else:
            result = await client.run(TRIVIAL_SOURCE, input=n, **options)
        _check(result, n + 1)

    return op


def _worker_pids(server: ServerProcess) -> list[int]:
    pids = []
    for child in server.children():
        with contextlib.suppress(Exception):
            if "zako_server.worker" in " ".join(child.cmdline()):
                pids.append(child.pid)
    return pids


async def zako_trivial(
    p: Params,
    workers: int,
    profile_dir: Path | None = None,
) -> tuple[dict[str, Load], dict[str, Any]]:
    """Trivial tasks with the server's default settings (workers from the heuristic),
    then the one-stream run again with `workers` workers if that is more."""
    loads: dict[str, Load] = {}
    info: dict[str, Any] = {}
    numbers = itertools.count()  # each task's input: never the same twice on a server
    async with ServerProcess(zako_argv(), "zako server") as server:
        info["banner"] = server.banner
        meter = _zako_meter(server)
        spied = {
            "server": server.pid,
            **{f"worker{i + 1}": pid for i, pid in enumerate(_worker_pids(server))},
        }
        spy_s = min(p.trivial_seconds, p.unary_seconds) - 1
        clients = [sdk_client(server.target, timeout=30) for _ in range(STREAMS)]
        try:
            one = clients[0]
            await closed_loop(
                "warmup", _sdk_op(numbers, one), count=p.warmup, concurrency=p.window, seconds=10
            )
            async with py_spy(profile_dir, "stream", spied, spy_s):
                loads["zako_stream"] = await measured(
                    closed_loop(
                        "zako, one Submit stream (SDK run)",
                        _sdk_op(numbers, one),
                        count=p.trivial_count,
                        concurrency=p.window,
                        seconds=p.trivial_seconds,
                    ),
                    meter(),
                )
            per_stream = max(p.window // STREAMS, 1)
            loads["zako_streams8"] = await measured(
                parallel(
                    [
                        closed_loop(
                            "",
                            _sdk_op(numbers, c),
                            count=p.trivial_count // STREAMS,
                            concurrency=per_stream,
                            seconds=p.trivial_seconds,
                        )
                        for c in clients
                    ],
                    f"zako, {STREAMS} Submit streams",
                    per_stream * STREAMS,
                ),
                meter(),
            )
            await closed_loop(
                "warmup",
                _sdk_op(numbers, one, unary=True),
                count=p.warmup,
                concurrency=1,
                seconds=10,
            )
            async with py_spy(profile_dir, "unary", spied, spy_s):
                loads["zako_unary"] = await measured(
                    closed_loop(
                        "zako, unary Run, sequential",
                        _sdk_op(numbers, one, unary=True),
                        count=p.unary_count,
                        concurrency=1,
                        seconds=p.unary_seconds,
                    ),
                    meter(),
                )
            # The worker builds its next isolate right after a task; with a pause the
            # next call finds it ready: the path's own latency, without that rebuild.
            loads["zako_unary_paced"] = await measured(
                closed_loop(
                    f"zako, unary Run, sequential, {PACE_MS} ms pauses",
                    _sdk_op(numbers, one, unary=True),
                    count=max(p.unary_count // 10, 5),
                    concurrency=1,
                    seconds=p.unary_seconds,
                    pause_s=PACE_MS / 1e3,
                ),
                meter(),
            )
            loads["zako_unary_c8"] = await measured(
                closed_loop(
                    f"zako, unary Run, {UNARY_CONCURRENCY} concurrent",
                    _sdk_op(numbers, one, unary=True),
                    count=p.trivial_count,
                    concurrency=UNARY_CONCURRENCY,
                    seconds=p.unary_seconds,
                ),
                meter(),
            )
            # Every task above was distinct: a hit would mean a figure measured the cache.
            info["action_cache_hits"] = (await action_cache_stats(server.target)).hits
        finally:
            for client in clients:
                await client.aclose()
    if profile_dir is not None:
        info["profile"] = summarize_profiles(profile_dir)
    default = int(server.banner.split("max ")[1].split(")")[0]) if "max " in server.banner else 0
    if workers > default:
        argv = zako_argv("--min-workers", str(workers), "--max-workers", str(workers))
        async with (
            ServerProcess(argv, f"zako server ({workers} workers)") as server,
            sdk_client(server.target, timeout=30) as client,
        ):
            await closed_loop(
                "warmup", _sdk_op(numbers, client), count=p.warmup, concurrency=p.window, seconds=10
            )
            loads["zako_stream_nw"] = await measured(
                closed_loop(
                    f"zako, one Submit stream, {workers} workers",
                    _sdk_op(numbers, client),
                    count=p.trivial_count,
                    concurrency=p.window,
                    seconds=p.trivial_seconds,
                ),
                _zako_meter(server)(),
            )
    # The same stream and unary runs with a fresh isolate per task (the pre-reuse design):
    # what warm isolate reuse is worth, measured in the same run.
    async with (
        ServerProcess(
            zako_argv("--isolate-reuse", "never"), "zako server (fresh isolates)"
        ) as server,
        sdk_client(server.target, timeout=30) as client,
    ):
        await closed_loop(
            "warmup", _sdk_op(numbers, client), count=p.warmup, concurrency=p.window, seconds=10
        )
        loads["zako_stream_fresh"] = await measured(
            closed_loop(
                "zako, one Submit stream, fresh isolate per task",
                _sdk_op(numbers, client),
                count=p.trivial_count,
                concurrency=p.window,
                seconds=p.trivial_seconds,
            ),
            _zako_meter(server)(),
        )
        loads["zako_unary_fresh"] = await measured(
            closed_loop(
                "zako, unary Run, sequential, fresh isolate per task",
                _sdk_op(numbers, client, unary=True),
                count=p.unary_count,
                concurrency=1,
                seconds=p.unary_seconds,
            ),
            _zako_meter(server)(),
        )
    return loads, info


async def action_cache_stats(target: str) -> Any:
    """The server's ActionCacheStats (hits, misses, ...), from a Stats call."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.ExecutorStub(channel)
        return (await stub.Stats(pb.StatsRequest(), timeout=30)).action_cache


# ---- (3) CPU-bound scaling --------------------------------------------------------------


def calibrate_cpu_task(target_ms: float) -> tuple[int, float]:
    """The loop count `n` for which CPU_SOURCE costs ~target_ms of CPU in a fresh
    MiniRacer (as in a worker), and the CPU ms measured. CPU time, not wall time, so
    that another job's load on the machine does not skew the calibration."""
    from py_mini_racer import MiniRacer

    def cpu_ms(n: int) -> float:
        racer = MiniRacer()
        try:
            t0 = time.process_time()
            racer.eval(commonjs_expression(CPU_SOURCE, str(n)))
            return (time.process_time() - t0) * 1e3
        finally:
            racer.close()

    n = 200_000
    for _ in range(4):
        n = max(int(n * target_ms / max(cpu_ms(n), 0.1)), 1000)
    return n, statistics.median(cpu_ms(n) for _ in range(3))


async def zako_cpu_scaling(p: Params, effective_cpus: float) -> dict[str, Any]:
    n, task_ms = calibrate_cpu_task(p.cpu_task_ms)
    top = max(2, min(p.cpu_max_workers, math.floor(effective_cpus)))
    rows: dict[str, Any] = {"loop_n": n, "task_cpu_ms_inprocess": round(task_ms, 2), "runs": {}}

    # n plus a task number (a few more iterations), so that no two tasks are the same and
    # the action cache never answers one: each task runs.
    numbers = itertools.count()

    def op_for(client: AsyncClient) -> Callable[[int], Awaitable[None]]:
        async def op(_: int) -> None:
            await client.run(CPU_SOURCE, input=n + next(numbers))

        return op

    for workers in range(1, top + 1):
        argv = zako_argv("--min-workers", str(workers), "--max-workers", str(workers))
        async with (
            ServerProcess(argv, f"zako server ({workers} workers)") as server,
            sdk_client(server.target, timeout=60) as client,
        ):
            op = op_for(client)
            await closed_loop("warmup", op, count=2 * workers, concurrency=2 * workers, seconds=10)
            rows["runs"][workers] = await measured(
                closed_loop(
                    f"zako, ~{p.cpu_task_ms:g} ms CPU tasks, {workers} worker(s)",
                    op,
                    count=p.cpu_tasks_per_worker * workers,
                    concurrency=2 * workers,
                    seconds=p.cpu_seconds,
                ),
                _zako_meter(server)(),
            )
    return rows


# ---- (4) memory ---------------------------------------------------------------------------


def _memory(pid: int) -> dict[str, int]:
    """RSS, and what of it is private (USS), proportional (PSS) and file-backed shared
    (mostly libmini_racer.so's V8 code, shared by every worker)."""
    try:
        full = psutil.Process(pid).memory_full_info()
    except psutil.Error:
        return {"rss": 0}
    return {
        "rss": int(full.rss),
        "uss": int(full.uss),
        "pss": int(getattr(full, "pss", 0)),
        "shared": int(getattr(full, "shared", 0)),
    }


async def _snapshot(server: ServerProcess, settle_s: float) -> dict[str, Any]:
    await asyncio.sleep(settle_s)
    return {
        "server": _memory(server.pid),
        "workers": {pid: _memory(pid) for pid in _worker_pids(server)},
    }


async def zako_memory(p: Params, workers: int) -> dict[str, Any]:
    """Idle RSS of the server and each worker; server RSS after N1 and after N2 tasks
    (N2 bounded by time: the counts actually run are reported)."""
    out: dict[str, Any] = {"workers": workers}
    argv = zako_argv("--min-workers", str(workers), "--max-workers", str(workers))
    settle = 0.5 if p.quick else 2.0
    async with ServerProcess(argv, "zako server") as server:
        out["idle"] = await _snapshot(server, settle)
        async with sdk_client(server.target, timeout=30) as client:
            # The action cache would hold up to its budget of these distinct outcomes
            # (bounded by design; see the caches section): here the question is leaks.
            op = _sdk_op(itertools.count(), client, cache="skip")
            first = await closed_loop(
                "leak, first",
                op,
                count=p.leak_first,
                concurrency=p.window,
                seconds=max(p.leak_seconds, 30),
            )
            out["first"] = await _snapshot(server, settle)
            rest = await closed_loop(
                "leak, rest",
                op,
                count=p.leak_total - p.leak_first,
                concurrency=p.window,
                seconds=p.leak_seconds,
                first=p.leak_first,
            )
            out["last"] = await _snapshot(server, settle)
        out["tasks_first"] = first.completed
        out["tasks_last"] = first.completed + rest.completed
        out["errors"] = first.errors + rest.errors
        out["rate_per_s"] = round(rest.rate, 1) if rest.completed else None
        out["rest_seconds"] = round(rest.elapsed, 1)
    return out


# ---- (5) cold start -------------------------------------------------------------------------


async def _wait_serving(target: str, timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                if time.perf_counter() >= deadline:
                    raise
            if time.perf_counter() >= deadline:
                raise TimeoutError(f"{target} not SERVING after {timeout} s")
            await asyncio.sleep(0.005)


async def cold_start(p: Params) -> dict[str, Any]:
    """Process exec to health SERVING (min workers ready: the banner comes after them)."""
    banner, serving = [], []
    for _ in range(p.cold_runs):
        server = ServerProcess(zako_argv(), "zako server")
        t0 = time.perf_counter()
        await server.start()
        try:
            await _wait_serving(server.target, 15)
            serving.append(time.perf_counter() - t0)
            banner.append(server.started_in)
        finally:
            await server.stop()
    return {
        "runs": len(serving),
        "serving_s": [round(s, 4) for s in serving],
        "banner_s": [round(s, 4) for s in banner],
        "median_s": statistics.median(serving),
        "max_s": max(serving),
    }


# ---- (6) overload ---------------------------------------------------------------------------


async def overload(p: Params) -> dict[str, Any]:
    """Offer twice the measured capacity to one worker behind a small queue.

    The task is a few ms of JS, not the trivial one: with warm isolates a trivial task's
    capacity is bounded by the host's CPUs (client, server and worker share 2 cores), and
    twice that cannot be offered without saturating the machine the harness runs on. With
    the worker as the bottleneck, as in a real overload, this measures admission."""
    n, task_ms = calibrate_cpu_task(p.overload_task_ms)
    argv = zako_argv(
        "--min-workers", "1", "--max-workers", "1", "--queue-capacity", str(p.overload_queue)
    )
    out: dict[str, Any] = {
        "queue_capacity": p.overload_queue,
        "workers": 1,
        "task_loop_n": n,
        "task_cpu_ms": task_ms,
    }
    async with (
        ServerProcess(argv, "zako server (overload)") as server,
        sdk_client(server.target, timeout=30) as client,
    ):
        numbers = itertools.count()  # distinct tasks: the action cache answers none

        async def op(_: int) -> None:
            await client.run(CPU_SOURCE, input=n + next(numbers))

        await closed_loop("warmup", op, count=p.warmup, concurrency=1, seconds=10)
        idle = await closed_loop(
            "unloaded",
            op,
            count=max(p.warmup, 10),
            concurrency=1,
            seconds=max(p.overload_seconds, 1),
        )
        # In flight = 1 running + the whole queue: the most that never sees a rejection.
        capacity = await closed_loop(
            "capacity",
            op,
            count=p.trivial_count,
            concurrency=1 + p.overload_queue,
            seconds=max(p.overload_seconds, 1),
        )
        rate = 2 * capacity.rate
        limit = max(int(rate * p.overload_seconds), 1)
        accepted: list[float] = []
        rejected: list[float] = []
        retry_hints: list[float | None] = []
        others: collections.Counter[str] = collections.Counter()

        async def fire(i: int) -> None:
            t0 = time.perf_counter()
            handle = await client.submit(CPU_SOURCE, input=n + next(numbers))
            outcome = await handle.outcome()
            took = time.perf_counter() - t0
            if isinstance(outcome, Result):
                accepted.append(took)
            elif isinstance(outcome, Overloaded):
                rejected.append(took)
                retry_hints.append(outcome.retry_after)
            else:
                others[type(outcome).__name__] += 1

        tasks: list[asyncio.Task[None]] = []
        meter = _zako_meter(server)()
        meter.start()
        start = time.perf_counter()
        while len(tasks) < limit:
            elapsed = time.perf_counter() - start
            if elapsed >= p.overload_seconds + 1.0:
                break
            due = min(int(elapsed * rate) + 1, limit)
            while len(tasks) < due:
                tasks.append(asyncio.create_task(fire(len(tasks))))
            await asyncio.sleep(0.002)
        sent_in = time.perf_counter() - start
        _, pending = await asyncio.wait(tasks, timeout=30) if tasks else (set(), set())
        cpu = meter.stop()
        for task in pending:
            task.cancel()
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                others[type(task.exception()).__name__] += 1
        out.update(
            {
                "unloaded_p50_ms": idle.p50_ms,
                "unloaded_p99_ms": idle.p99_ms,
                "capacity_per_s": capacity.rate,
                "offered_per_s": len(tasks) / sent_in,
                "sent": len(tasks),
                "accepted": len(accepted),
                "rejected": len(rejected),
                "other_outcomes": dict(others),
                "stuck": len(pending),
                "accepted_p50_ms": percentile(accepted, 50) * 1e3,
                "accepted_p99_ms": percentile(accepted, 99) * 1e3,
                "rejected_p50_ms": percentile(rejected, 50) * 1e3,
                "rejected_p99_ms": percentile(rejected, 99) * 1e3,
                "rejections_with_retry_hint": sum(h is not None for h in retry_hints),
                "cpu_s": cpu,
                "other_load_cores": meter.other_cores,
                # Worst case for an accepted task: the whole queue and one running ahead of it.
                "accepted_bound_ms": (p.overload_queue + 2) * 1e3 / capacity.rate
                if capacity.rate
                else math.nan,
            }
        )
    return out
