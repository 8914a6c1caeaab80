"""The Node.js peer of issue 16, measured against Zako in the same run on the same loads.

The peer (bench/peer/server.js) is what a Node shop would build instead of Zako: a
@grpc/grpc-js server implementing zako.v1 Submit and Run that runs each task on a
Piscina worker-thread pool in a node:vm context, either a fresh context per task or one
reused context per worker thread. The unchanged Zako SDK drives it, so the client side
is the same code for both servers.

Three servers, 1 worker each (Zako `--min-workers 1 --max-workers 1`, the peer 1 thread),
each under the same three loads: the trivial task on one Submit stream with `window` in
flight, unary Run one at a time, and the ~50 ms CPU-bound loop (calibrated once, so all
three run the same `n`) with 2 in flight.

The peer's packages are pinned in bench/peer/package-lock.json and installed with
`npm ci` into bench/peer/node_modules (git-ignored) the first time, or again when the
lock file changes. Without node or npm, or when the install fails, the section reports
`skipped` with the reason, and the report prints it where the table would be.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from bench.common import ROOT, CpuMeter, Load, ServerProcess, closed_loop, measured, zako_argv
from bench.params import Params
from bench.payloads import CPU_SOURCE
from bench.scenarios import action_cache_stats, calibrate_cpu_task, sdk_client
from zako_sdk import AsyncClient

PEER_DIR = ROOT / "bench" / "peer"
NPM_TIMEOUT_S = 300
_STAMP = ".zako-bench-installed"  # in node_modules: the lock file's hash it was installed from

# key -> column title; "zako" is Zako itself, the others the peer in that mode.
SYSTEMS = {
    "zako": "Zako",
    "peer_fresh": "Node peer, fresh vm context per task",
    "peer_reused": "Node peer, one reused context per worker",
}


class PeerUnavailable(RuntimeError):
    """Node or npm is missing, or the peer's packages could not be installed."""


def _lock_hash() -> str:
    return hashlib.sha256((PEER_DIR / "package-lock.json").read_bytes()).hexdigest()


def ensure_installed(peer_dir: Path = PEER_DIR) -> Path:
    """`npm ci` the peer's pinned packages unless node_modules already holds them.

    Raises PeerUnavailable with the reason. A file lock serializes concurrent runs (a
    test and a bench at once) so neither sees the other's half-written tree."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(n for n, p in (("node", node), ("npm", npm)) if p is None)
        raise PeerUnavailable(f"{missing} not found on PATH")
    stamp = peer_dir / "node_modules" / _STAMP
    wanted = _lock_hash()
    with open(peer_dir / "package-lock.json", "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if stamp.is_file() and stamp.read_text().strip() == wanted:
                return peer_dir / "node_modules"
            try:
                subprocess.run(
                    [
                        npm,
                        "ci",
                        "--prefix",
                        str(peer_dir),
                        "--ignore-scripts",
                        "--omit=optional",
                        "--no-audit",
                        "--no-fund",
                        "--loglevel=error",
                    ],
                    check=True,
                    capture_output=True,
                    text=True,
                    timeout=NPM_TIMEOUT_S,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
                detail = (getattr(exc, "stderr", "") or "")[-500:]
                raise PeerUnavailable(f"npm ci in {peer_dir} failed: {exc} {detail}") from exc
            stamp.write_text(wanted + "\n")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return peer_dir / "node_modules"


def google_protos() -> Path:
    """The folder holding google/rpc/*.proto (googleapis-common-protos), as protoc uses."""
    import importlib.util

    spec = importlib.util.find_spec("google.rpc")
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / "error_details.proto").is_file():
            return Path(location).parent.parent
    raise PeerUnavailable("google/rpc/error_details.proto not found (googleapis-common-protos)")


def peer_argv(mode: str, threads: int = 1) -> list[str]:
    node = shutil.which("node")
    if node is None:
        raise PeerUnavailable("node not found on PATH")
    return [
        node,
        str(PEER_DIR / "server.js"),
        "--mode",
        mode,
        "--threads",
        str(threads),
        "--listen",
        "127.0.0.1:0",
        "--include",
        str(google_protos()),
        "--protos",
        str(ROOT / "protos"),
    ]


def _argv(key: str) -> list[str]:
    if key == "zako":
        return zako_argv("--min-workers", "1", "--max-workers", "1")
    return peer_argv(key.removeprefix("peer_"))


def _trivial(
    numbers: Iterator[int], client: AsyncClient, unary: bool
) -> Callable[[int], Awaitable[None]]:
    """The trivial task with the next of `numbers` as input: never the same task twice on
    one server, so Zako's action cache answers none of them (each one runs)."""

    async def op(_: int) -> None:
        n = next(numbers)
        run = client.run_unary if unary else client.run
        result = await run("module.exports = (x) => x + 1", input=n)
        if result.value_json != str(n + 1):
            raise AssertionError(f"expected {n + 1}, got {result.value_json!r}")

    return op


async def measure_system(key: str, p: Params, loop_n: int) -> dict[str, Any]:
    """The three loads against one server; CPU of this process, the server and its
    child processes (Zako's workers; the peer's threads are inside its one process)."""
    async with (
        ServerProcess(_argv(key), SYSTEMS[key]) as server,
        sdk_client(server.target, timeout=60) as client,
    ):

        def meter() -> CpuMeter:
            return CpuMeter(
                {"client": os.getpid(), "server": server.pid}, children_of={"workers": server.pid}
            )

        numbers = itertools.count()
        stream, unary = _trivial(numbers, client, False), _trivial(numbers, client, True)
        await closed_loop("warmup", stream, count=p.warmup, concurrency=p.window, seconds=10)
        loads: dict[str, Load] = {}
        loads["stream"] = await measured(
            closed_loop(
                f"{SYSTEMS[key]}: one Submit stream",
                stream,
                count=p.trivial_count,
                concurrency=p.window,
                seconds=p.trivial_seconds,
            ),
            meter(),
        )
        await closed_loop("warmup", unary, count=p.warmup, concurrency=1, seconds=10)
        loads["unary"] = await measured(
            closed_loop(
                f"{SYSTEMS[key]}: unary Run, sequential",
                unary,
                count=p.unary_count,
                concurrency=1,
                seconds=p.unary_seconds,
            ),
            meter(),
        )

        async def cpu(_: int) -> None:
            await client.run(CPU_SOURCE, input=loop_n + next(numbers))

        await closed_loop("warmup", cpu, count=2, concurrency=2, seconds=10)
        loads["cpu"] = await measured(
            closed_loop(
                f"{SYSTEMS[key]}: ~{p.cpu_task_ms:g} ms CPU tasks",
                cpu,
                count=p.cpu_tasks_per_worker,
                concurrency=2,
                seconds=p.cpu_seconds,
            ),
            meter(),
        )
        out: dict[str, Any] = {"banner": server.banner, "loads": loads}
        if key == "zako":  # every task was distinct: none may have come from the cache
            out["action_cache_hits"] = (await action_cache_stats(server.target)).hits
        return out


async def peer_comparison(p: Params) -> dict[str, Any]:
    """Zako and both peer modes under the same loads; {"skipped": reason} for the peer
    when Node cannot run it (Zako is still measured, so the section is never empty)."""
    loop_n, task_ms = calibrate_cpu_task(p.cpu_task_ms)
    out: dict[str, Any] = {"loop_n": loop_n, "task_cpu_ms": round(task_ms, 2), "systems": {}}
    try:
        ensure_installed()
    except PeerUnavailable as exc:
        out["skipped"] = str(exc)
    for key in SYSTEMS:
        if key != "zako" and "skipped" in out:
            continue
        out["systems"][key] = await measure_system(key, p, loop_n)
    return out


def peer_loads(section: dict[str, Any] | None) -> dict[str, Load]:
    """Every load of the section, keyed `<system>_<load>` (for error checks and JSON)."""
    loads: dict[str, Load] = {}
    for key, system in ((section or {}).get("systems") or {}).items():
        for name, load in system["loads"].items():
            loads[f"{key}_{name}"] = load
    return loads
