"""What a benchmark report says about the machine and the software it ran on."""

from __future__ import annotations

import contextlib
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    import grpc
    from py_mini_racer import MiniRacer

    from zako_server.server.heuristics import default_max_workers, probe_machine

    machine = probe_machine()
    racer = MiniRacer()
    try:
        v8 = racer.v8_version
    finally:
        racer.close()
    return {
        "cpu_count": os.cpu_count(),
        "effective_cpus": machine.cpus,
        "effective_cpus_source": machine.cpus_source,
        "default_max_workers": default_max_workers(machine),
        "cpu_model": _cpu_model(),
        "memory_bytes": psutil.virtual_memory().total,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "protobuf": _version("protobuf"),
        "mini_racer": _version("mini-racer"),
        "v8": v8,
        "zako": _version("zako"),
        "psutil": psutil.__version__,
    }
