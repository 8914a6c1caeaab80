"""Shared machinery of the benchmarks: load drivers, statistics, server subprocesses.

Every loop here is bounded twice, by a count and by a deadline, and every server is a
subprocess listening on 127.0.0.1 port 0, so a run never hangs and never leaves the host.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"


# ---- statistics -----------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Load:
    """What one load run measured. Latencies are seconds, per completed operation."""

    name: str
    concurrency: int
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str = ""
    elapsed: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # role -> CPU seconds used
    other_cores: float = math.nan  # what other processes kept busy meanwhile, in cores

    @property
    def completed(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.completed / self.elapsed if self.elapsed > 0 else math.nan

    @property
    def p50_ms(self) -> float:
        return percentile(self.latencies, 50) * 1e3

    @property
    def p99_ms(self) -> float:
        return percentile(self.latencies, 99) * 1e3

    def cpu_ms_per_op(self) -> dict[str, float]:
        n = max(self.completed + self.errors, 1)
        return {role: seconds * 1e3 / n for role, seconds in self.cpu.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "completed": self.completed,
            "errors": self.errors,
            "first_error": self.first_error,
            "elapsed_s": round(self.elapsed, 4),
            "rate_per_s": _round(self.rate),
            "p50_ms": _round(self.p50_ms),
            "p99_ms": _round(self.p99_ms),
            "cpu_ms_per_op": {k: _round(v) for k, v in self.cpu_ms_per_op().items()},
            "other_load_cores": _round(self.other_cores, 3),
        }


def _round(value: float, digits: int = 4) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


Op = Callable[[int], Awaitable[object]]


async def closed_loop(
    name: str,
    op: Op,
    *,
    count: int,
    concurrency: int,
    seconds: float,
    drain_s: float = 30.0,
    first: int = 0,
    pause_s: float = 0.0,
) -> Load:
    """Run `op(i)` for i = first, first+1, … from `concurrency` lanes, each starting its
    next operation when its last one ends (after `pause_s`), until `count` were started
    or `seconds` passed; then wait at most `drain_s` for those in flight. An op that
    raises counts as an error (its latency is not recorded)."""
    load = Load(name, concurrency)
    indexes = itertools.count(first)
    stop_after = first + count
    start = time.perf_counter()
    deadline = start + seconds
    last_end = start

    async def lane() -> None:
        nonlocal last_end
        while time.perf_counter() < deadline:
            index = next(indexes)
            if index >= stop_after:
                return
            t0 = time.perf_counter()
            try:
                await op(index)
            except Exception as exc:
                load.errors += 1
                load.first_error = load.first_error or f"{type(exc).__name__}: {exc}"[:300]
                continue
            last_end = time.perf_counter()
            load.latencies.append(last_end - t0)
            if pause_s:
                await asyncio.sleep(pause_s)

    lanes = [asyncio.create_task(lane()) for _ in range(concurrency)]
    _, pending = await asyncio.wait(lanes, timeout=seconds + drain_s)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
        load.first_error = load.first_error or f"{len(pending)} lane(s) stuck past the drain"
    load.elapsed = last_end - start
    return load


def _machine_busy() -> float:
    """CPU seconds the whole machine spent busy (all CPUs) since boot."""
    times = psutil.cpu_times()
    return sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq"))


class CpuMeter:
    """CPU seconds (user + system, all threads) used by named processes between
    `start()` and `stop()`; children (V8 workers) are found at both ends. Also what the
    rest of the machine used meanwhile (`others`, in cores): another job's load on a
    2-core box skews every figure, so the report shows it next to them."""

    def __init__(self, roles: dict[str, int], children_of: dict[str, int] | None = None) -> None:
        self._roles = dict(roles)
        self._children_of = dict(children_of or {})
        self._before: dict[int, float] = {}
        self._busy0 = 0.0
        self._t0 = 0.0
        self.result: dict[str, float] = {}
        self.other_cores = math.nan

    def _pids(self) -> dict[str, list[int]]:
        pids = {role: [pid] for role, pid in self._roles.items()}
        for role, parent in self._children_of.items():
            try:
                pids[role] = [c.pid for c in psutil.Process(parent).children(recursive=True)]
            except psutil.Error:
                pids[role] = []
        return pids

    @staticmethod
    def _cpu(pid: int) -> float | None:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            return None
        return times.user + times.system

    def start(self) -> None:
        for pids in self._pids().values():
            for pid in pids:
                value = self._cpu(pid)
                if value is not None:
                    self._before[pid] = value
        self._busy0, self._t0 = _machine_busy(), time.perf_counter()

    def stop(self) -> dict[str, float]:
        busy = _machine_busy() - self._busy0
        wall = time.perf_counter() - self._t0
        for role, pids in self._pids().items():
            total = 0.0
            for pid in pids:
                value = self._cpu(pid)
                if value is not None:
                    total += value - self._before.get(pid, 0.0)
            self.result[role] = total
        ours = sum(self.result.values())
        self.other_cores = max(busy - ours, 0.0) / wall if wall > 0 else math.nan
        return self.result


async def machine_quiet(seconds: float = 1.0) -> float:
    """Cores the machine keeps busy while this harness sleeps (other jobs' load)."""
    meter = CpuMeter({"harness": os.getpid()})
    meter.start()
    await asyncio.sleep(seconds)
    meter.stop()
    return meter.other_cores


async def measured(load_coro: Awaitable[Load], meter: CpuMeter) -> Load:
    meter.start()
    load = await load_coro
    load.cpu = meter.stop()
    load.other_cores = meter.other_cores
    return load


async def parallel(loads: list[Awaitable[Load]], name: str, concurrency: int) -> Load:
    """Merge loads run side by side (one per stream) into one."""
    parts = await asyncio.gather(*loads)
    merged = Load(name, concurrency)
    for part in parts:
        merged.latencies.extend(part.latencies)
        merged.errors += part.errors
        merged.first_error = merged.first_error or part.first_error
    merged.elapsed = max(part.elapsed for part in parts)
    return merged


# ---- subprocess servers -----------------------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    """The environment for servers we start: no inherited ZAKO_* settings, and this
    checkout importable (for `python -m bench.servers`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZAKO_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


_PORT = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


class ServerProcess:
    """A server subprocess that prints a banner `... listening on 127.0.0.1:PORT ...`."""

    def __init__(self, argv: Sequence[str], name: str) -> None:
        self.argv = list(argv)
        self.name = name
        self.port = 0
        self.banner = ""
        self.started_in = 0.0  # seconds from exec to the banner
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    async def start(self, timeout: float = 60.0) -> ServerProcess:
        t0 = time.perf_counter()
        self._proc = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr,
            env=child_env(),
            cwd=ROOT,
        )
        try:
            await asyncio.wait_for(self._read_banner(), timeout)
        except BaseException:
            await self.stop()
            raise
        self.started_in = time.perf_counter() - t0
        return self

    async def _read_banner(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        seen: list[str] = []
        while True:
            raw = await self._proc.stdout.readline()
            if not raw:
                raise RuntimeError(
                    f"{self.name} exited before listening: {' | '.join(seen)} {self.stderr_tail()}"
                )
            line = raw.decode(errors="replace").strip()
            seen.append(line)
            match = _PORT.search(line)
            if match:
                self.port = int(match.group(1))
                self.banner = line
                return

    def check_alive(self) -> None:
        """Raise (with its stderr) if the server died while we measured it."""
        if self._proc is not None and self._proc.returncode is not None:
            raise RuntimeError(
                f"{self.name} exited with {self._proc.returncode} during the "
                f"measurement: {self.stderr_tail()}"
            )

    def stderr_tail(self, limit: int = 2000) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-limit:]

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return []

    def rss(self) -> int:
        return rss_of(self.pid)

    async def stop(self, timeout: float = 15.0) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc.stdout is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.stdout.read(), 2.0)
        self._stderr.close()

    async def __aenter__(self) -> ServerProcess:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        try:
            if exc_type is None:
                self.check_alive()
        finally:
            await self.stop()


def rss_of(pid: int) -> int:
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return 0


def zako_argv(*flags: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "zako_server",
        "--listen",
        f"{LOOPBACK}:0",
        "--log-level",
        "warning",
        "--drain-grace",
        "1",
        *flags,
    ]


def bench_server_argv(kind: str, *flags: str) -> list[str]:
    return [sys.executable, "-m", "bench.servers", kind, *flags]
