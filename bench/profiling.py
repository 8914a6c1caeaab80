"""Optional profiling of a benchmark run (`--py-spy DIR`): py-spy recordings of the
server and its workers, and a summary of where their time went."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path


def py_spy_executable() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextlib.asynccontextmanager
async def py_spy(
    out_dir: Path | None, label: str, pids: dict[str, int], seconds: float
) -> AsyncIterator[None]:
    """Record py-spy (wall clock, idle included, collapsed stacks that speedscope and
    flamegraph.pl read) of `pids` for `seconds` while the body runs a load."""
    if out_dir is None:
        yield
        return
    exe = py_spy_executable()
    if exe is None:
        raise RuntimeError("--py-spy needs py-spy: .venv/bin/pip install py-spy")
    procs = []
    for role, pid in pids.items():
        procs.append(
            await asyncio.create_subprocess_exec(
                exe,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(int(seconds), 1)),
                "--rate",
                "250",
                "--idle",
                "--format",
                "raw",
                "-o",
                str(out_dir / f"{label}-{role}.txt"),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        )
    try:
        yield
    finally:
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), seconds + 15)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()


def summarize_profiles(out_dir: Path) -> dict[str, list[tuple[str, float]]]:
    return {path.stem: summarize_collapsed(path) for path in sorted(out_dir.glob("*.txt"))}


def summarize_collapsed(path: Path, top: int = 12) -> list[tuple[str, float]]:
    """The `top` frames by inclusive share of samples in a py-spy collapsed-stack file
    (line numbers dropped, the interpreter's own start-up frames skipped)."""
    if not path.exists():
        return []
    total = 0
    inclusive: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        frames = {re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")}
        for frame in frames:
            inclusive[frame] += int(count)
    boring = (
        "<frozen runpy>",
        "asyncio/runners.py",
        "threading.py",
        "main (",
        "<module> (",
        "BaseEventLoop.run_",
        "Handle._run",
        "BaseEventLoop._run_once",
        "ThreadedChildWatcher",
    )
    ranked = [
        (frame, round(100 * n / total, 1))
        for frame, n in inclusive.most_common()
        if not any(b in frame for b in boring)
    ]
    return ranked[:top]
