"""The report's parts for issues 15 and 16: their comparison tables and target rows.

Issue 16 (per-task overhead): the table of Zako against the Node.js peer (bench/peer.py)
and the issue's ratios, each against a baseline measured in the same run: Zako's
server + worker CPU per trivial task, one-stream throughput over the echo ceiling, unary
p50 over echo's, the SDK client's CPU per task (from the `zako` and `echo` sections),
and Zako against the peer on every workload (from the `peer` section).

Issue 15 (caches): the table of bench/caches.py and its targets.
"""

from __future__ import annotations

import math
from typing import Any

from bench.common import Load
from bench.peer import SYSTEMS
from bench.tables import Target, fmt, ratio, table

NAN = math.nan


def _cpu(load: Load | None, *roles: str) -> float:
    if load is None:
        return NAN
    per = load.cpu_ms_per_op()
    return sum(per.get(role, 0.0) for role in roles) if per else NAN


def _rate(load: Load | None) -> float:
    return load.rate if load is not None else NAN


def _p50(load: Load | None) -> float:
    return load.p50_ms if load is not None else NAN


def _system_load(section: dict[str, Any], key: str, name: str) -> Load | None:
    system = (section.get("systems") or {}).get(key)
    return system["loads"].get(name) if system else None


# ---- issue 16 ------------------------------------------------------------------------------


def peer_table(section: dict[str, Any] | None, window: int) -> list[str]:
    """The issue's table: one column per server, one row per workload."""
    if not section:
        return []
    out = [
        "Issue 16: Zako against the Node.js peer (1 worker each, the same SDK client and "
        f"loads; CPU-bound loop n={section['loop_n']:,}, {section['task_cpu_ms']} ms CPU in a "
        "fresh in-process MiniRacer)",
        "",
    ]
    if "skipped" in section:
        out += [f"NODE PEER SKIPPED: {section['skipped']}", ""]
    keys = [key for key in SYSTEMS if key in (section.get("systems") or {})]

    def row(title: str, value: Any) -> list[str]:
        return [title, *(value(key) for key in keys)]

    def get(key: str, name: str) -> Load | None:
        return _system_load(section, key, name)

    rows = [
        row(
            f"trivial task, one Submit stream, {window} in flight (tasks/s)",
            lambda k: fmt(_rate(get(k, "stream"))),
        ),
        row("unary Run, sequential, p50 (ms)", lambda k: fmt(_p50(get(k, "unary")), 2)),
        row(
            "server + worker CPU per trivial task (ms)",
            lambda k: fmt(_cpu(get(k, "stream"), "server", "workers"), 2),
        ),
        row(
            "SDK client CPU per trivial task (ms)",
            lambda k: fmt(_cpu(get(k, "stream"), "client"), 2),
        ),
        row(
            "~50 ms CPU-bound task, 2 in flight (tasks/s)",
            lambda k: fmt(_rate(get(k, "cpu")), 1),
        ),
        row(
            "other load during these runs (cores, max)",
            lambda k: fmt(
                max(
                    (ld.other_cores for ld in section["systems"][k]["loads"].values()),
                    default=NAN,
                ),
                2,
            ),
        ),
    ]
    out += table(["workload", *(SYSTEMS[k] for k in keys)], rows)
    out += [""] + [f"{SYSTEMS[k]}: {section['systems'][k]['banner']}" for k in keys] + [""]
    return out


def targets_16(loads: dict[str, Load], section: dict[str, Any] | None) -> list[Target]:
    """The issue's goals: Zako's own ratios against echo (from the `zako` and `echo`
    sections), then Zako against the peer on each workload (the `peer` section)."""
    stream, echo = loads.get("zako_stream"), loads.get("echo_stream")
    unary, echo_unary = loads.get("zako_unary"), loads.get("echo_unary")
    rows = [
        Target(
            "i16_server_worker_cpu",
            "Zako server + worker CPU per trivial task (one stream)",
            f"server {fmt(_cpu(stream, 'server'), 2)} + workers "
            f"{fmt(_cpu(stream, 'workers'), 2)} ms",
            _cpu(stream, "server", "workers"),
            0.6,
            False,
            "ms",
            16,
        ),
        Target(
            "i16_stream_vs_echo",
            "One-stream throughput vs the echo ceiling",
            f"{fmt(_rate(stream))} vs {fmt(_rate(echo))} /s",
            ratio(_rate(stream), _rate(echo)),
            0.5,
            True,
            "x",
            16,
        ),
        Target(
            "i16_unary_vs_echo",
            "Unary p50 over echo's (Run, one at a time)",
            f"{fmt(_p50(unary), 2)} vs {fmt(_p50(echo_unary), 2)} ms",
            ratio(_p50(unary), _p50(echo_unary)),
            2.0,
            False,
            "x",
            16,
        ),
        Target(
            "i16_client_cpu",
            "SDK client CPU per task (one stream)",
            f"{fmt(_cpu(stream, 'client'), 2)} ms",
            _cpu(stream, "client"),
            0.25,
            False,
            "ms",
            16,
        ),
    ]
    section = section or {}

    def get(key: str, name: str) -> Load | None:
        return _system_load(section, key, name)

    zs, fs, rs = get("zako", "stream"), get("peer_fresh", "stream"), get("peer_reused", "stream")
    zu, fu = get("zako", "unary"), get("peer_fresh", "unary")
    zc, fc = get("zako", "cpu"), get("peer_fresh", "cpu")
    every = ("client", "server", "workers")
    rows += [
        Target(
            "i16_stream_vs_peer",
            "Trivial tasks, one stream: Zako vs the fresh-context peer",
            f"{fmt(_rate(zs))} vs {fmt(_rate(fs))} /s",
            ratio(_rate(zs), _rate(fs)),
            1.0,
            True,
            "x",
            16,
        ),
        Target(
            "i16_unary_vs_peer",
            "Unary Run p50: Zako vs the fresh-context peer",
            f"{fmt(_p50(zu), 2)} vs {fmt(_p50(fu), 2)} ms",
            ratio(_p50(zu), _p50(fu)),
            1.0,
            False,
            "x",
            16,
        ),
        Target(
            "i16_cpu_bound_vs_peer",
            "~50 ms CPU-bound tasks: Zako vs the fresh-context peer",
            f"{fmt(_rate(zc))} vs {fmt(_rate(fc))} /s",
            ratio(_rate(zc), _rate(fc)),
            1.0,
            True,
            "x",
            16,
        ),
        Target(
            "i16_cpu_vs_reused_peer",
            "CPU per trivial task (client + server + worker): Zako vs the reused-context peer",
            f"{fmt(_cpu(zs, *every), 2)} vs {fmt(_cpu(rs, *every), 2)} ms",
            ratio(_cpu(zs, *every), _cpu(rs, *every)),
            1.0,
            False,
            "x",
            16,
        ),
    ]
    return rows
