"""What this process may really use, and the defaults derived from it.

On Kubernetes the pod's limits rule, not the node's totals: a container that sees 64
host CPUs but has `cpu.max = 200000 100000` may burn two. So effective CPUs are the
smallest of the cgroup quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us / cpu.cfs_period_us`),
the CPU affinity mask and the host count; effective memory is the smallest of the cgroup
limit (v2 `memory.max`, v1 `memory.limit_in_bytes`) and physical memory.

The defaults derived from them: at most half the effective CPUs as V8 workers, at least
one; a queue of 2 x workers with a floor of 1024 (see default_queue_capacity); and a
tenant quota (tenant_max_queued) equal to the queue, since a larger one is never reached.
Every probe takes its root directory as an argument so tests can hand it fake files.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import psutil

# cgroup v1 reports "no limit" as a huge number near 2**63 rounded to pages.
_V1_UNLIMITED = 1 << 60


@dataclass(frozen=True)
class Machine:
    """Effective resources, each with where the figure came from (shown by --print-config)."""

    cpus: float
    cpus_source: str
    memory_bytes: int
    memory_source: str


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_limit(root: Path) -> tuple[float, str] | None:
    """CPU quota from cgroup v2 `cpu.max` or v1 cfs files under `root`, if any."""
    v2 = _read(root / "cpu.max")
    if v2:
        quota, _, period = v2.partition(" ")
        if quota != "max" and period:
            try:
                return int(quota) / int(period), f"cgroup v2 {root / 'cpu.max'}"
            except (ValueError, ZeroDivisionError):
                return None
        return None
    for folder in (root / "cpu", root / "cpu,cpuacct", root):
        quota_text = _read(folder / "cpu.cfs_quota_us")
        period_text = _read(folder / "cpu.cfs_period_us")
        if quota_text and period_text:
            try:
                quota_us, period_us = int(quota_text), int(period_text)
            except ValueError:
                return None
            if quota_us > 0 and period_us > 0:
                return quota_us / period_us, f"cgroup v1 {folder / 'cpu.cfs_quota_us'}"
            return None
    return None


def cgroup_memory_limit(root: Path) -> tuple[int, str] | None:
    """Memory limit from cgroup v2 `memory.max` or v1 `memory.limit_in_bytes`, if any."""
    v2 = _read(root / "memory.max")
    if v2 is not None:
        if v2 == "max":
            return None
        try:
            return int(v2), f"cgroup v2 {root / 'memory.max'}"
        except ValueError:
            return None
    for folder in (root / "memory", root):
        text = _read(folder / "memory.limit_in_bytes")
        if text:
            try:
                value = int(text)
            except ValueError:
                return None
            if 0 < value < _V1_UNLIMITED:
                return value, f"cgroup v1 {folder / 'memory.limit_in_bytes'}"
            return None
    return None


def _affinity_count() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def probe_machine(cgroup_root: Path = Path("/sys/fs/cgroup")) -> Machine:
    """Measure effective CPUs and memory, honouring cgroups and CPU affinity."""
    host_cpus = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    cpus, cpus_source = float(host_cpus), "psutil.cpu_count"
    affinity = _affinity_count()
    if affinity is not None and affinity < cpus:
        cpus, cpus_source = float(affinity), "sched_getaffinity"
    quota = cgroup_cpu_limit(cgroup_root)
    if quota is not None and quota[0] < cpus:
        cpus, cpus_source = quota

    memory, memory_source = int(psutil.virtual_memory().total), "psutil.virtual_memory"
    limit = cgroup_memory_limit(cgroup_root)
    if limit is not None and limit[0] < memory:
        memory, memory_source = limit
    return Machine(cpus, cpus_source, memory, memory_source)


def owns_cpus(machine: Machine) -> bool:
    """Whether the CPUs this process may run on are its own to pin workers to: its CPU
    mask is no wider than its effective CPUs. A container with a CPU quota but no cpuset
    (Kubernetes without the static CPU manager) sees every host CPU in its mask, and so
    does every other pod on the node: pinning there would stack their workers on the
    same CPUs."""
    count = _affinity_count()
    return count is not None and count <= machine.cpus


def default_max_workers(machine: Machine) -> int:
    """Half the effective CPUs, at least one (a 1-CPU pod still gets a worker)."""
    return max(1, math.floor(machine.cpus / 2))


# The content-addressed store's share of the memory the server may use, and its bounds
# (the design's heuristic): 10 % of effective memory, clamped to [4 MiB, 4 GiB].
CAS_SHARE = 0.10
CAS_MIN_BYTES = 4 << 20
CAS_MAX_BYTES = 4 << 30


def default_cas_bytes(machine: Machine) -> int:
    """The store's budget: 10 % of effective (cgroup-aware) memory, within [4 MiB, 4 GiB].

    Blobs are module text that many tasks share; a tenth of the pod leaves the rest to
    the workers' heaps, and the clamp keeps a tiny pod useful and a huge host sane."""
    return int(min(CAS_MAX_BYTES, max(CAS_MIN_BYTES, machine.memory_bytes * CAS_SHARE)))


def default_queue_capacity(max_workers: int) -> int:
    """A queue of 2 x workers, with a floor so bursts are not refused.

    A build tool fans out hundreds of small tasks at once; refusing all but 2 x workers
    of them would turn every burst into retries. The floor keeps a burst of a few
    hundred queued while still bounding memory.
    """
    return max(2 * max_workers, 1024)
