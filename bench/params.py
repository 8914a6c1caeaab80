"""The counts and bounds of a benchmark run, and the constants its scenarios share."""

from __future__ import annotations

from dataclasses import dataclass

MB = 1 << 20
STREAMS = 8  # "8 concurrent streams"
UNARY_CONCURRENCY = 8
PACE_MS = 20  # pause between paced calls: longer than a worker's isolate rebuild (~4 ms)


@dataclass(frozen=True)
class Params:
    """Counts and time bounds of one run; every loop stops at whichever comes first."""

    quick: bool
    window: int  # tasks in flight on the one-stream runs (and in total on 8)
    warmup: int
    trivial_count: int
    trivial_seconds: float
    unary_count: int
    unary_seconds: float
    echo_count: int
    echo_seconds: float
    inprocess_count: int
    inprocess_seconds: float
    naive_count: int
    naive_seconds: float
    cpu_task_ms: float
    cpu_tasks_per_worker: int
    cpu_seconds: float
    cpu_max_workers: int
    leak_first: int
    leak_total: int
    leak_seconds: float
    cold_runs: int
    overload_queue: int
    overload_seconds: float
    overload_task_ms: float  # CPU per overload task: the worker, not the host, is the limit
    # Issue 15 (bench/caches.py): repeated calls, each loop also bounded by cache_seconds.
    ts_calls: int  # TypeScript transpiles through Zako, timed
    node_calls: int  # the same call in one warm Node process
    wire_calls: int  # TypeScript calls through the byte-counting relay
    lodash_calls: int  # lodash tasks, and as many trivial ones
    cache_seconds: float
    cas_capacity: int  # --cas-bytes of the server the distinct blobs are sent to
    cas_blob_bytes: int
    cas_blobs: int
    # Issue 16 (bench/instructions.py): tasks run under callgrind, after a warm-up.
    instr_warmup: int
    instr_tasks: int
    instr_unary_tasks: int  # then unary calls one at a time, on the same server

    @classmethod
    def quick_mode(cls) -> Params:
        return cls(
            quick=True,
            window=8,
            warmup=3,
            trivial_count=24,
            trivial_seconds=5,
            unary_count=8,
            unary_seconds=5,
            echo_count=200,
            echo_seconds=2,
            inprocess_count=10,
            inprocess_seconds=2,
            naive_count=16,
            naive_seconds=3,
            cpu_task_ms=10,
            cpu_tasks_per_worker=3,
            cpu_seconds=10,
            cpu_max_workers=2,
            leak_first=10,
            leak_total=30,
            leak_seconds=5,
            cold_runs=1,
            overload_queue=4,
            overload_seconds=0.5,
            overload_task_ms=2,
            ts_calls=3,
            node_calls=20,
            wire_calls=2,
            lodash_calls=5,
            cache_seconds=5,
            cas_capacity=4 * MB,
            cas_blob_bytes=64 << 10,
            cas_blobs=96,
            instr_warmup=4,
            instr_tasks=12,
            instr_unary_tasks=6,
        )

    @classmethod
    def full_mode(cls, leak_seconds: float = 150.0) -> Params:
        return cls(
            quick=False,
            window=64,
            warmup=100,
            trivial_count=50_000,
            trivial_seconds=10,
            unary_count=2_000,
            unary_seconds=6,
            echo_count=100_000,
            echo_seconds=4,
            inprocess_count=5_000,
            inprocess_seconds=3,
            naive_count=20_000,
            naive_seconds=6,
            cpu_task_ms=50,
            cpu_tasks_per_worker=40,
            cpu_seconds=20,
            cpu_max_workers=8,
            leak_first=1_000,
            leak_total=100_000,
            leak_seconds=leak_seconds,
            cold_runs=5,
            overload_queue=4,
            overload_seconds=5,
            overload_task_ms=5,
            ts_calls=200,
            node_calls=500,
            wire_calls=20,
            lodash_calls=500,
            cache_seconds=15,
            cas_capacity=8 * MB,
            cas_blob_bytes=64 << 10,
            cas_blobs=512,
            instr_warmup=64,
            instr_tasks=300,
            instr_unary_tasks=100,
        )
