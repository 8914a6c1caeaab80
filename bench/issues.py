"""The report's parts for issues 15 and 16: their comparison tables and target rows.

Issue 16 (per-task overhead): the table of Zako against the Node.js peer (bench/peer.py)
and the issue's ratios, each against a baseline measured in the same run: Zako's
server + worker CPU per trivial task, one-stream throughput over the echo ceiling, unary
p50 over echo's, the SDK client's CPU per task (from the `zako` and `echo` sections),
and Zako against the peer on every workload (from the `peer` section).

Issue 15 (caches): the table of bench/caches.py and its targets.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from bench.caches import FRESH_CALLS, IDLE_S
from bench.common import Load
from bench.peer import SYSTEMS
from bench.tables import Target, fmt, ratio, table

NAN = math.nan
ROLES = ("client", "server", "workers")


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


def instructions_table(counts: dict[str, Any] | None) -> list[str]:
    """Instructions per trivial task of each process, Zako beside the floor and echo
    (bench/instructions.py): the per-task cost that run-to-run noise does not move."""
    if not counts:
        return []
    title = "Issue 16: instructions per trivial task under callgrind (bench/instructions.py)"
    if "skipped" in counts:
        return [title, "", f"INSTRUCTIONS SKIPPED: {counts['skipped']}", ""]
    roles = ("server", "workers", "other")
    kinds = ("zako", "floor", "echo")

    def figures(kind: str, load: str) -> dict[str, Any]:
        found = counts.get(kind) or {}
        return (found.get("unary") or {}) if load == "unary" else found

    def per_task(kind: str, role: str, load: str) -> float:
        return float((figures(kind, load).get("per_task") or {}).get(role, math.nan))

    def total(kind: str, load: str) -> float:
        return per_task(kind, "server", load) + per_task(kind, "workers", load)

    def thousands(value: float) -> str:
        if math.isnan(value):
            return "-"
        # The idle subtraction leaves a few hundred either way where nothing ran.
        return f"{(value if abs(value) >= 500 else 0.0) / 1000:,.0f}k"

    rows = []
    for load, suffix in (("stream", ""), ("unary", ", unary")):
        for role in roles:
            if load == "unary" and role == "other":
                continue
            label = role if role != "workers" else "workers (floor: its child)"
            rows.append(
                [
                    label + suffix,
                    *(thousands(per_task(kind, role, load)) for kind in kinds),
                    fmt(ratio(per_task("zako", role, load), per_task("floor", role, load)), 2)
                    + "x",
                ]
            )
        rows.append(
            [
                "server + workers" + suffix,
                *(thousands(total(kind, load)) for kind in kinds),
                fmt(ratio(total("zako", load), total("floor", load)), 2) + "x",
            ]
        )
    tasks = "; ".join(
        f"{kind} {figures(kind, 'stream').get('tasks', 0)} + "
        f"{figures(kind, 'unary').get('tasks', 0)} unary"
        for kind in kinds
    )
    out = [
        title,
        f"(tasks counted: {tasks}; one stream with a window in flight, then unary calls one"
        " at a time; idle spending subtracted; heap readings not counted)",
        "",
    ]
    out += table(["process", "zako", "floor", "echo", "zako / floor"], rows)
    return [*out, ""]


def floor_table(loads: dict[str, Load]) -> list[str]:
    """Zako beside the stack's floor (bench/floor.py) and echo: how much of each gap to
    echo is the stack's own (the floor's) and how much is Zako's features."""
    floor, floor_unary = loads.get("floor_stream"), loads.get("floor_unary")
    if floor is None and floor_unary is None:
        return []
    stream, echo = loads.get("zako_stream"), loads.get("echo_stream")
    unary, echo_unary = loads.get("zako_unary"), loads.get("echo_unary")

    def cpu(load: Load | None) -> str:
        return " / ".join(fmt(_cpu(load, role), 2) for role in ROLES)

    rows = [
        [
            "one stream (tasks/s)",
            fmt(_rate(stream)),
            fmt(_rate(floor)),
            fmt(_rate(echo)),
            fmt(ratio(_rate(stream), _rate(floor)), 2) + "x",
            fmt(ratio(_rate(floor), _rate(echo)), 2) + "x",
        ],
        [
            "unary, sequential, p50 (ms)",
            fmt(_p50(unary), 2),
            fmt(_p50(floor_unary), 2),
            fmt(_p50(echo_unary), 2),
            fmt(ratio(_p50(unary), _p50(floor_unary)), 2) + "x",
            fmt(ratio(_p50(floor_unary), _p50(echo_unary)), 2) + "x",
        ],
        ["one stream, CPU ms/task client / server / workers", cpu(stream), cpu(floor), "", "", ""],
    ]
    out = [
        "Issue 16: Zako against the stack's floor (bench/floor.py: grpc.aio, a pipe to one "
        "child process, one reused MiniRacer, none of Zako's features; driven like echo)",
        "",
    ]
    out += table(["workload", "zako", "floor", "echo", "zako / floor", "floor / echo"], rows)
    return [*out, ""]


def _echo_targets(
    stream: Load | None, unary: Load | None, echo: Load | None, echo_unary: Load | None
) -> list[Target]:
    """The issue's four figures against echo, for whichever server made `stream` and
    `unary` (Zako's in the targets, the floor's in `floor_targets_16`)."""
    return [
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


def _reused_peer_target(stream: Load | None, reused: Load | None) -> Target:
    return Target(
        "i16_cpu_vs_reused_peer",
        "CPU per trivial task (client + server + worker): Zako vs the reused-context peer",
        f"{fmt(_cpu(stream, *ROLES), 2)} vs {fmt(_cpu(reused, *ROLES), 2)} ms",
        ratio(_cpu(stream, *ROLES), _cpu(reused, *ROLES)),
        1.0,
        False,
        "x",
        16,
    )


def targets_16(loads: dict[str, Load], section: dict[str, Any] | None) -> list[Target]:
    """The issue's goals: Zako's own ratios against echo (from the `zako` and `echo`
    sections), then Zako against the peer on each workload (the `peer` section)."""
    rows = _echo_targets(
        loads.get("zako_stream"),
        loads.get("zako_unary"),
        loads.get("echo_stream"),
        loads.get("echo_unary"),
    )
    section = section or {}

    def get(key: str, name: str) -> Load | None:
        return _system_load(section, key, name)

    zs, fs, rs = get("zako", "stream"), get("peer_fresh", "stream"), get("peer_reused", "stream")
    zu, fu = get("zako", "unary"), get("peer_fresh", "unary")
    zc, fc = get("zako", "cpu"), get("peer_fresh", "cpu")
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
        _reused_peer_target(zs, rs),
    ]
    return rows


def floor_targets_16(loads: dict[str, Load], section: dict[str, Any] | None) -> list[Target]:
    """The issue's targets that do not name the fresh-context peer, measured on the
    stack's floor in the same run: what a server made of Zako's parts reaches with
    none of its features. A target the floor misses is out of reach of this stack on
    this machine, whatever the server leaves out. The floor's client is a bare
    grpc.aio client (the SDK's own Python is not in its client row)."""
    floor, floor_unary = loads.get("floor_stream"), loads.get("floor_unary")
    if floor is None and floor_unary is None:
        return []
    reused = _system_load(section or {}, "peer_reused", "stream")
    rows = [
        *_echo_targets(floor, floor_unary, loads.get("echo_stream"), loads.get("echo_unary")),
        _reused_peer_target(floor, reused),
    ]
    return [dataclasses.replace(t, title=f"the floor: {FLOOR_LABELS[t.key]}") for t in rows]


# What each target measures, said of any server (the targets' own titles name Zako's).
FLOOR_LABELS = {
    "i16_server_worker_cpu": "server + worker CPU per trivial task, one stream",
    "i16_stream_vs_echo": "one-stream throughput over echo's",
    "i16_unary_vs_echo": "sequential unary p50 over echo's",
    "i16_client_cpu": "client CPU per task, one stream",
    "i16_cpu_vs_reused_peer": "client + server + worker CPU over the reused-context peer's",
}


def reach_table(zako: list[Target], floor: list[Target]) -> list[str]:
    """Each target beside the floor's figure for it (`floor_targets_16`)."""
    if not floor:
        return []
    mine = {t.key: t for t in zako}
    rows = []
    for target in floor:
        own = mine.get(target.key)
        rows.append(
            [
                FLOOR_LABELS[target.key],
                target.target_text,
                "-" if own is None else f"{fmt(own.value, 2)} {own.status}",
                f"{fmt(target.value, 2)} {target.status}",
            ]
        )
    out = [
        "Issue 16: the targets measured on the stack's floor in this run (a target the floor "
        "misses is beyond grpc.aio + a worker process + mini-racer on this machine, whatever "
        "a server leaves out; the floor's client is a bare grpc.aio client, not the SDK)",
        "",
    ]
    out += table(["target", "bound", "zako", "floor"], rows)
    return [*out, ""]


# ---- issue 15 ------------------------------------------------------------------------------


def _mib(value: float) -> str:
    return f"{value / (1 << 20):.1f} MiB"


def caches_table(section: dict[str, Any] | None) -> list[str]:
    """The caches section as one table: each figure beside its baseline."""
    if not section:
        return []
    spec = section["spec"]
    out = [
        f"Issue 15: the caches ({spec['typescript']}, {spec['lodash']}; Zako with its "
        "default settings, sequential calls)",
        "",
    ]
    if "skipped" in section:
        out += [f"NPM TREES SKIPPED (no TypeScript or lodash rows): {section['skipped']}", ""]
    rows: list[list[str]] = []
    ts = section.get("transpile")
    if ts:
        node, load = ts["node"], ts["load"]
        cc = ts["code_cache"]
        rows += [
            [
                "ts.transpileModule, repeated: p50 per call",
                f"{fmt(load.p50_ms, 2)} ms ({load.completed} calls)",
                f"warm Node {node['node']}: {fmt(node['p50_ms'], 2)} ms ({node['count']} calls)",
                fmt(ratio(load.p50_ms, node["p50_ms"]), 2) + "x",
            ],
            [
                "the same, against Node giving each call a fresh typescript instance "
                "(Zako's hermetic rule)",
                f"{fmt(load.p50_ms, 2)} ms",
                f"Node {node['node']}, fresh instance per call: "
                f"{fmt(ts.get('node_fresh', {}).get('p50_ms', NAN), 2)} ms "
                f"({ts.get('node_fresh', {}).get('count', 0)} calls)",
                fmt(ratio(load.p50_ms, ts.get("node_fresh", {}).get("p50_ms", NAN)), 2) + "x",
            ],
            [
                f"ts.transpileModule after {IDLE_S:g} s idle (the worker collected garbage)",
                f"{fmt(ts.get('after_idle_ms', NAN), 2)} ms",
                f"repeated: {fmt(load.p50_ms, 2)} ms",
                fmt(ratio(ts.get("after_idle_ms", NAN), load.p50_ms), 2) + "x",
            ],
            [
                "ts.transpileModule in a new isolate (as after a retirement), p50 of "
                f"{FRESH_CALLS}",
                f"{fmt(ts.get('fresh_isolate_ms', NAN), 2)} ms",
                f"repeated: {fmt(load.p50_ms, 2)} ms",
                fmt(ratio(ts.get("fresh_isolate_ms", NAN), load.p50_ms), 2) + "x",
            ],
            [
                "CPU per repeated call: client / server / workers",
                " / ".join(fmt(load.cpu_ms_per_op().get(r), 2) for r in ROLES) + " ms",
                "",
                "",
            ],
            [
                "ts.transpileModule: first call",
                f"{fmt(ts['first_call_ms'])} ms, {_mib(ts['first_call_bytes_up'])} sent",
                f"Node: require {fmt(node['loadMs'])} ms + first call {fmt(node['firstMs'])} ms",
                "",
            ],
            [
                "bytes sent per repeated call (on the wire)",
                f"{fmt(ts['bytes_up_per_call'], 0)} B ({ts['wire_calls']} calls)",
                f"the task's input: {ts['input_bytes']:,} B",
                fmt(ratio(ts["bytes_up_per_call"], ts["input_bytes"]), 2) + "x",
            ],
            [
                "during the repeats: CAS uploads; code cache",
                f"{ts['cas_uploaded_bytes_during_repeats']:,} B uploaded",
                f"sources {cc['source_hits']:,} hits / {cc['source_misses']:,} sent "
                f"({cc['source_bytes_sent']:,} B); compiled {cc['compiled_hits']:,} hits / "
                f"{cc['compiled_misses']:,} misses",
                "",
            ],
        ]
    lodash = section.get("lodash")
    if lodash:
        lo, tr = lodash["lodash"], lodash["trivial"]
        rows += [
            [
                "lodash task, repeated: p50",
                f"{fmt(lo.p50_ms, 2)} ms ({lo.completed} calls)",
                f"trivial task: {fmt(tr.p50_ms, 2)} ms ({tr.completed} calls)",
                fmt(ratio(lo.p50_ms, tr.p50_ms), 2) + "x",
            ],
            [
                "CPU per lodash task: client / server / workers",
                " / ".join(fmt(lo.cpu_ms_per_op().get(r), 2) for r in ROLES) + " ms",
                "trivial: " + " / ".join(fmt(tr.cpu_ms_per_op().get(r), 2) for r in ROLES) + " ms",
                "",
            ],
        ]
    hits, echo = section.get("hits"), section.get("echo_unary")
    if hits and echo:
        rows.append(
            [
                "action-cache hit, unary Run: p50",
                f"{fmt(hits.p50_ms, 2)} ms ({hits.completed} calls)",
                f"echo unary: {fmt(echo.p50_ms, 2)} ms",
                fmt(ratio(hits.p50_ms, echo.p50_ms), 2) + "x",
            ]
        )
    cas = section.get("cas")
    if cas:
        rows += [
            [
                f"CAS: {cas['uploaded']} distinct blobs of {cas['blob_bytes'] >> 10} KiB",
                f"held at most {_mib(cas['max_bytes'])}; {cas['evictions']:,} evicted; "
                f"now {cas['final_blobs']} blobs, {_mib(cas['final_bytes'])}",
                f"capacity {_mib(cas['capacity_bytes'])} (Stats: "
                f"{_mib(cas['reported_capacity'])}); {_mib(cas['uploaded_bytes'])} sent",
                fmt(ratio(cas["max_bytes"], cas["capacity_bytes"]), 2) + "x",
            ],
            [
                "a task whose tree was evicted",
                f"answered {cas['after_eviction']['value']}",
                f"{cas['after_eviction']['evicted_before_rerun']} of its "
                f"{cas['after_eviction']['tree_blobs']} blobs evicted; missing-blob "
                f"rejections: {cas['after_eviction']['missing_rejections']}; "
                f"server RSS {cas['server_rss_growth'] / (1 << 20):+.1f} MiB over the flood",
                "",
            ],
        ]
    out += table(["", "Zako", "baseline (same run)", "ratio"], rows)
    out += ["", f"zako server: {section.get('banner', '')}", ""]
    return out


def targets_15(section: dict[str, Any] | None) -> list[Target]:
    section = section or {}
    ts = section.get("transpile") or {}
    load, node = ts.get("load"), ts.get("node") or {}
    lodash = section.get("lodash") or {}
    lo, tr = lodash.get("lodash"), lodash.get("trivial")
    hits, echo = section.get("hits"), section.get("echo_unary")
    cas = section.get("cas") or {}
    return [
        Target(
            "i15_ts_vs_node",
            "ts.transpileModule repeated: per call vs warm Node",
            f"{fmt(_p50(load), 2)} vs {fmt(node.get('p50_ms', NAN), 2)} ms",
            ratio(_p50(load), node.get("p50_ms", NAN)),
            2.0,
            False,
            "x",
            15,
        ),
        Target(
            "i15_ts_bytes",
            "Bytes sent per repeated TypeScript call vs its input",
            f"{fmt(ts.get('bytes_up_per_call', NAN), 0)} vs {ts.get('input_bytes', '-')} B",
            ratio(ts.get("bytes_up_per_call", NAN), ts.get("input_bytes", NAN)),
            2.0,
            False,
            "x",
            15,
        ),
        Target(
            "i15_lodash_vs_trivial",
            "Repeated lodash task vs a trivial task (p50)",
            f"{fmt(_p50(lo), 2)} vs {fmt(_p50(tr), 2)} ms",
            ratio(_p50(lo), _p50(tr)),
            2.0,
            False,
            "x",
            15,
        ),
        Target(
            "i15_hit_vs_echo",
            "Action-cache hit p50 vs unary echo p50",
            f"{fmt(_p50(hits), 2)} vs {fmt(_p50(echo), 2)} ms",
            ratio(_p50(hits), _p50(echo)),
            1.5,
            False,
            "x",
            15,
        ),
        Target(
            "i15_cas_budget",
            "CAS bytes held (max) vs its capacity, under distinct blobs",
            f"{_mib(cas.get('max_bytes', 0))} of {_mib(cas.get('capacity_bytes', 0))}, "
            f"{cas.get('evictions', 0):,} evictions",
            ratio(float(cas.get("max_bytes", NAN)), float(cas.get("capacity_bytes", NAN)))
            if cas
            else NAN,
            1.0,
            False,
            "x",
            15,
        ),
        Target(
            "i15_cas_evicts",
            "CAS evicts when distinct blobs exceed it (evictions)",
            f"{cas.get('uploaded', 0)} blobs, {_mib(cas.get('uploaded_bytes', 0))} sent",
            float(cas["evictions"]) if cas else NAN,
            1,
            True,
            "evictions",
            15,
        ),
    ]
