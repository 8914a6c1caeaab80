"""Instructions per trivial task, counted by callgrind (issue 16): a per-task cost that a
noisy machine does not blur.

On the shared VMs this project is benchmarked on, the wall-clock and CPU-time rows of
the same code move by ±30 % from one run to the next, far more than most per-task
changes are worth. The instructions a process executes hardly do: valgrind's callgrind
counts them per process; a worker or a server driven alone gave the same count within
~1 % on repeated runs, and full runs of this section within ~1 % for the floor and ~5 %
for Zako's server (the idle subtraction: its idle rate varies more). So this
section runs Zako, the stack's floor (bench/floor.py) and the echo server under
callgrind and prints what each process spends per trivial task, and Zako's figures over
the floor's: the ratio to watch when a change is too small for the timed rows to show.

How: the server starts under `valgrind --tool=callgrind --trace-children=yes`, so it
and every process it starts (Zako's worker, the floor's child) are counted apart.
After a warm-up, `callgrind_control --dump` has every process write what it counted
so far and start again from zero; the load runs; a second dump holds exactly the load's
instructions. Two loads run on each server, each dumped on its own: the trivial task on
one stream with `window` in flight, then unary calls one at a time (the sequential
path, where nothing is shared between tasks: the farthest of issue 16's targets).
What each process spent while idle (heartbeats, timers), dumped over IDLE_S before the
loads (once what a worker does once after a burst, its idle collection, is over), is
subtracted from each at the same rate: under valgrind a task takes ~50 times as long,
and background ticks would otherwise count.

Not counted: mini-racer's heap readings (subtracted: their inclusive count in the
load's dump, from callgrind_annotate; reported apart, per task). A reading builds a new V8
context (~2.8M instructions); a worker takes one for a task that ran 2 ms of CPU or more,
which under valgrind is every task, against ~1 in 60 of trivial tasks at full speed.
What a reading costs around that call is still counted (the probe eval before it,
mini-racer's Python, the garbage V8 collects later): a worker with the reading removed
counted ~0.45M instructions a task less under valgrind. So Zako's worker figure is that
much above what a trivial task costs it at full speed, where the path runs once in ~60.
Zako runs with one worker, no recycling of its warm isolate inside the loads, and
`--worker-brief-wait 1` (instruction_counts says why).
Between unary calls under valgrind the worker idles longer than SETTLE_AFTER_S (5 ms),
so it resets the warm isolate in an eval of its own before each call (worker/process.py):
driven alone with 50 ms between tasks it counted ~0.31M a task more than back to back.
At full speed that happens only to calls more than 5 ms apart. Zako's unary worker row
carries that too.
Instructions are not time: a cache miss or a system call costs far more than its count
says. They rank per-task code paths, which is what these rows are for.

Needs valgrind (Debian's `valgrind` package); without it the section reports why it
did not run and the rest of the bench goes on.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import psutil

from bench.baselines import BytesStream
from bench.common import ServerProcess, bench_server_argv, closed_loop, zako_argv
from bench.floor import FLOOR_SERVICE
from bench.params import Params
from bench.payloads import messages
from bench.scenarios import _sdk_op, sdk_client
from bench.servers import ECHO_SERVICE

# Seconds over which each process's idle spending is read before the load, after
# SETTLE_S of quiet following the warm-up.
IDLE_S = 5.0
SETTLE_S = 6.0
# Under valgrind a server takes ~30-60 s to start and a trivial task ~50x as long.
START_TIMEOUT_S = 900.0
CALL_TIMEOUT_S = 900.0
HEAP_READING = "MiniRacer::HeapReporter::HeapStats("
# Unary calls before the counted ones (the stream's warm-up has warmed the server).
UNARY_WARMUP = 8

_LINE = re.compile(r"^\s*([\d,]+)\s+(?:\(\s*[\d.]+%\)\s+)?(.*)$")


def missing_tools() -> str | None:
    """Why the section cannot run here, or None."""
    tools = ("valgrind", "callgrind_control", "callgrind_annotate")
    absent = [tool for tool in tools if shutil.which(tool) is None]
    return f"{' and '.join(absent)} not found (Debian package: valgrind)" if absent else None


def under_callgrind(argv: Sequence[str], out_dir: str) -> list[str]:
    return [
        "valgrind",
        "--tool=callgrind",
        "--trace-children=yes",
        # V8 writes the code it then runs: valgrind must see those writes.
        "--smc-check=all-non-file",
        f"--callgrind-out-file={out_dir}/callgrind.%p.out",
        *argv,
    ]


async def dump(pids: Sequence[int], out_dir: str) -> dict[int, Path]:
    """Have each process write what it counted since its last dump (and start again
    from zero); the file of each one's new part."""
    before = {pid: _parts(out_dir, pid) for pid in pids}
    proc = await asyncio.create_subprocess_exec(
        "callgrind_control",
        "--dump",
        *map(str, pids),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await proc.wait()
    files = {}
    for pid in pids:
        new = set(_parts(out_dir, pid)) - set(before[pid])
        if new:
            files[pid] = max(new, key=lambda path: int(path.name.rsplit(".", 1)[1]))
    return files


def _parts(out_dir: str, pid: int) -> list[Path]:
    return list(Path(out_dir).glob(f"callgrind.{pid}.out.*"))


def _spent(part: Path) -> tuple[int, int]:
    """All the instructions of a dump, and those inside heap readings."""
    text = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(part)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    total = readings = 0
    for line in text.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        count = int(m.group(1).replace(",", ""))
        if m.group(2).startswith("PROGRAM TOTALS"):
            total = count
        elif HEAP_READING in m.group(2):
            readings = max(readings, count)  # recursion lists it more than once
    return total, readings


def roles(server_pid: int) -> dict[int, str]:
    """The server, its task-running children ("workers") and anything else it started
    (Zako's transform pool, multiprocessing's resource tracker: "other")."""
    found = {server_pid: "server"}
    try:
        children = psutil.Process(server_pid).children(recursive=True)
    except psutil.Error:
        return found
    for child in children:
        try:
            line = " ".join(child.cmdline())
        except psutil.Error:
            continue
        worker = "zako_server.worker" in line or "bench.floor" in line
        found[child.pid] = "workers" if worker else "other"
    return found


Op = Callable[[int], Awaitable[None]]
# What a server's client offers: the stream op, the unary op, and how to close them.
Ops = tuple[Op, Op, Callable[[], Awaitable[None]]]


async def count(
    name: str, argv: Sequence[str], make_ops: Callable[[str], Awaitable[Ops]], p: Params
) -> dict[str, Any]:
    """Instructions per task of each role of one server: the stream load's figures, and
    the unary load's under "unary"."""
    with tempfile.TemporaryDirectory(prefix="zako-callgrind-") as out_dir:
        server = ServerProcess(under_callgrind(argv, out_dir), f"{name} under callgrind")
        await server.start(timeout=START_TIMEOUT_S)
        try:
            stream_op, unary_op, closer = await make_ops(server.target)
            try:
                await closed_loop(
                    "warmup", stream_op, count=p.instr_warmup, concurrency=p.window, seconds=1e4
                )
                await closed_loop(
                    "warmup", unary_op, count=UNARY_WARMUP, concurrency=1, seconds=1e4
                )
                who = roles(server.pid)
                # What follows a burst once (a worker's idle collection after
                # IDLE_COLLECT_S) is neither per task nor a steady idle rate.
                await asyncio.sleep(SETTLE_S)
                await dump(list(who), out_dir)  # start-up, warm-up, settling: not counted
                t0 = time.perf_counter()
                await asyncio.sleep(IDLE_S)
                idle = await dump(list(who), out_dir)
                idle_s = time.perf_counter() - t0
                # Each load's dump is read after both have run: reading one takes seconds,
                # which would otherwise be idle spending in the next load's dump.
                loads = {}
                for load_name, op, tasks, concurrency in (
                    ("stream", stream_op, p.instr_tasks, p.window),
                    ("unary", unary_op, p.instr_unary_tasks, 1),
                ):
                    t1 = time.perf_counter()
                    load = await closed_loop(
                        f"{name} {load_name}", op, count=tasks, concurrency=concurrency, seconds=1e4
                    )
                    after = await dump(list(who), out_dir)
                    loads[load_name] = (load, after, time.perf_counter() - t1)
            finally:
                await closer()
        finally:
            await server.stop(timeout=120)
        rates = {pid: _spent(part)[0] / idle_s for pid, part in idle.items()}
        counted = {
            load_name: _per_task(load, after, rates, who, load_s)
            for load_name, (load, after, load_s) in loads.items()
        }
    idle_rate: dict[str, float] = {"server": 0.0, "workers": 0.0, "other": 0.0}
    for pid, role in who.items():
        idle_rate[role] += rates.get(pid, 0.0)
    return {**counted["stream"], "idle_per_s": idle_rate, "unary": counted["unary"]}


def _per_task(
    load: Any, after: dict[int, Path], rates: dict[int, float], who: dict[int, str], load_s: float
) -> dict[str, Any]:
    """One load's instructions per task of each role, idle spending and heap readings out."""
    per_task: dict[str, float] = {"server": 0.0, "workers": 0.0, "other": 0.0}
    readings = 0.0
    done = max(load.completed, 1)
    for pid, role in who.items():
        if pid not in after or pid not in rates:
            continue
        spent, in_readings = _spent(after[pid])
        per_task[role] += (spent - in_readings - rates[pid] * load_s) / done
        readings += in_readings / done
    return {
        "tasks": load.completed,
        "errors": load.errors,
        "first_error": load.first_error,
        "per_task": per_task,
        "heap_readings_per_task": readings,
    }


async def instruction_counts(p: Params) -> dict[str, Any]:
    """Zako (one worker), the floor and echo, each under callgrind, one after another."""
    why = missing_tools()
    if why is not None:
        return {"skipped": why}
    msgs = messages()
    numbers = itertools.count(int(time.time() * 1000) % 10**9 * 1000)

    async def zako_ops(target: str) -> Ops:
        client = sdk_client(target, timeout=CALL_TIMEOUT_S)
        return _sdk_op(numbers, client), _sdk_op(numbers, client, unary=True), client.aclose

    def bytes_ops(service: str) -> Callable[[str], Awaitable[Ops]]:
        async def make(target: str) -> Ops:
            channel = grpc.aio.insecure_channel(target)
            stream = BytesStream(channel, f"/{service}/Stream", 1)
            unary = channel.unary_unary(f"/{service}/Unary")

            async def op(_: int) -> None:
                await stream.call(msgs.submit_request)

            async def called(_: int) -> None:
                await unary(msgs.run_request, timeout=CALL_TIMEOUT_S)

            async def close() -> None:
                await stream.close()
                await channel.close()

            return op, called, close

        return make

    out: dict[str, Any] = {}
    # One worker; and no recycling of its warm isolate inside the counted loads: a
    # recycle (a fresh isolate, hardened, its modules compiled again: once in 500 tasks
    # by default) landed in whichever load crossed the 500th task and put ~1.1M
    # instructions on each of its 100 unary tasks.
    # And evals wait for their answer on the worker's loop thread as they do at full
    # speed (worker/evaluation.py): there a trivial eval answers in ~0.1-0.3 ms, within
    # the 2 ms the default allows; under valgrind it takes milliseconds of wall time, and
    # a wall-time threshold would send some of them down the long-eval path instead.
    one_worker = (
        *("--min-workers", "1", "--max-workers", "1"),
        *("--isolate-max-tasks", "100000", "--worker-brief-wait", "1"),
    )
    for name, argv, make in (
        ("zako", zako_argv(*one_worker), zako_ops),
        ("floor", bench_server_argv("floor"), bytes_ops(FLOOR_SERVICE)),
        ("echo", bench_server_argv("echo"), bytes_ops(ECHO_SERVICE)),
    ):
        out[name] = await count(name, argv, make, p)
    failed = [
        f"{name}{' unary' if part is not r else ''}: {part['errors']} error(s), "
        f"first: {part['first_error'][:200]}"
        for name, r in out.items()
        for part in (r, r["unary"])
        if part["errors"]
    ]
    if failed:
        out["errors"] = "; ".join(failed)
    return out
