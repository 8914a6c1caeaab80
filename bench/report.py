"""The report of a benchmark run: each issue-7 target as a row, and the Markdown tables."""

from __future__ import annotations

import math
from typing import Any

from bench.caches import caches_loads
from bench.common import Load
from bench.flood import render_flood
from bench.issues import (
    caches_table,
    floor_table,
    floor_targets_16,
    instructions_table,
    peer_table,
    reach_table,
    targets_15,
    targets_16,
)
from bench.params import MB, Params
from bench.peer import peer_loads
from bench.tables import Target, fmt, ratio, table


def all_loads(results: dict[str, Any]) -> list[Load]:
    loads = list(loads_of(results).values())
    loads += list(((results.get("cpu") or {}).get("runs") or {}).values())
    loads += list(peer_loads(results.get("peer")).values())
    loads += list(caches_loads(results.get("caches")).values())
    return loads


def loads_of(results: dict[str, Any]) -> dict[str, Load]:
    loads: dict[str, Load] = {}
    for key in ("echo", "inprocess", "naive", "floor"):
        loads.update(results.get(key) or {})
    if "zako" in results:
        loads.update(results["zako"][0])
    return loads


def targets(results: dict[str, Any], params: Params) -> list[Target]:
    loads = loads_of(results)
    nan = math.nan

    def rate(key: str) -> float:
        return loads[key].rate if key in loads else nan

    def p50(key: str) -> float:
        return loads[key].p50_ms if key in loads else nan

    rows = [
        Target(
            "stream_vs_echo",
            "Trivial tasks, one Submit stream vs echo msgs/s",
            f"{fmt(rate('zako_stream'))} vs {fmt(rate('echo_stream'))} /s",
            ratio(rate("zako_stream"), rate("echo_stream")),
            0.5,
            True,
        ),
        Target(
            "unary_vs_echo",
            "Unary Run p50 vs echo unary p50",
            f"{fmt(p50('zako_unary'), 2)} vs {fmt(p50('echo_unary'), 2)} ms",
            ratio(p50("zako_unary"), p50("echo_unary")),
            3.0,
            False,
        ),
        Target(
            "vs_naive",
            "Throughput vs naive design (one stream vs naive, 8 callers)",
            f"{fmt(rate('zako_stream'))} vs {fmt(rate('naive_unary_c8'))} /s",
            ratio(rate("zako_stream"), rate("naive_unary_c8")),
            5.0,
            True,
        ),
    ]
    cpu = results.get("cpu") or {}
    runs = cpu.get("runs", {})
    one, two = runs.get(1), runs.get(2)
    rows.append(
        Target(
            "cpu_scaling",
            "CPU-bound ~50 ms tasks, 2 workers vs 1",
            f"{fmt(two.rate if two else nan)} vs {fmt(one.rate if one else nan)} /s",
            ratio(two.rate, one.rate) if one and two else nan,
            1.7,
            True,
        )
    )
    memory = results.get("memory") or {}
    idle = [
        m["rss"]
        for when in ("idle", "last")
        for m in (memory.get(when) or {}).get("workers", {}).values()
    ]
    rows.append(
        Target(
            "worker_rss",
            "Idle worker RSS (max: fresh and after the load)",
            f"{len(idle)} sample(s); USS {fmt(_worker_mem(memory, 'uss') / MB)}, "
            f"PSS {fmt(_worker_mem(memory, 'pss') / MB)} MB",
            max(idle) / MB if idle else nan,
            60,
            False,
            "MB",
        )
    )
    first = (memory.get("first") or {}).get("server", {}).get("rss")
    last = (memory.get("last") or {}).get("server", {}).get("rss")
    rows.append(
        Target(
            "server_rss_growth",
            f"Server RSS growth, {memory.get('tasks_first', 0):,} -> "
            f"{memory.get('tasks_last', 0):,} tasks (asked {params.leak_total:,})",
            f"{fmt(first / MB if first else nan)} -> {fmt(last / MB if last else nan)} MB",
            (last - first) / first * 100 if first and last else nan,
            5,
            False,
            "%",
        )
    )
    flood = results.get("flood") or {}
    rows.append(
        Target(
            "log_flood_rss",
            "Log flood on a never-read Submit stream: server RSS growth",
            f"{flood.get('tasks', 0)} tasks x 2^20 lines, "
            f"{flood.get('completed', 0)} completed after reading",
            flood.get("growth_mb", nan),
            flood.get("bound_mb", 50.0),
            False,
            "MB",
        )
    )
    cold = results.get("cold") or {}
    rows.append(
        Target(
            "cold_start",
            "Cold start to SERVING (median of runs)",
            f"{cold.get('runs', 0)} run(s), max {fmt(cold.get('max_s', nan), 2)} s",
            cold.get("median_s", nan),
            1.5,
            False,
            "s",
        )
    )
    rows += targets_16(loads, results.get("peer"))
    rows += targets_15(results.get("caches"))
    return rows


def floor_targets(results: dict[str, Any]) -> list[Target]:
    """Issue 16's targets measured on the stack's floor in the same run (see
    bench.issues.floor_targets_16): which of them the stack itself can meet."""
    return floor_targets_16(loads_of(results), results.get("peer"))


def _worker_mem(memory: dict[str, Any], kind: str) -> float:
    values = [
        m.get(kind, 0)
        for when in ("idle", "last")
        for m in (memory.get(when) or {}).get("workers", {}).values()
    ]
    return max(values) if values else math.nan


# ---- the report --------------------------------------------------------------------------


def render(
    report: dict[str, Any],
    results: dict[str, Any],
    tgts: list[Target],
    floor_tgts: list[Target],
) -> str:
    m = report["machine"]
    out = [
        f"Zako benchmark ({report['mode']}) — {report['started_at']}, {report['duration_s']:.0f} s",
        f"machine: {m['cpu_count']} CPUs ({m['effective_cpus']:g} effective, "
        f"{m['cpu_model']}), {m['memory_bytes'] / (1 << 30):.1f} GiB; Python {m['python']}, "
        f"grpcio {m['grpcio']}, protobuf {m['protobuf']}, mini-racer {m['mini_racer']}, "
        f"V8 {m['v8']}, zako {m['zako']}",
        f"other processes' load (cores): {fmt(report['other_load_before'], 2)} before the run,"
        f" at most {fmt(report['other_load_max'], 2)} during a measurement "
        "(column 'other load'; the figures are only clean near 0)",
        "",
    ]
    if report["other_load_max"] > 0.25:
        out[-1:-1] = [
            "WARNING: other processes used the CPUs during this run; "
            "rerun on a quiet machine before quoting the figures"
        ]
    loads = loads_of(results)
    if loads:
        rows = []
        for load in loads.values():
            cpu = load.cpu_ms_per_op()
            cpu_text = " / ".join(
                fmt(cpu.get(r), 2) for r in ("client", "server", "workers") if r in cpu
            )
            rows.append(
                [
                    load.name,
                    str(load.concurrency),
                    f"{load.completed:,}",
                    fmt(load.rate),
                    fmt(load.p50_ms, 2),
                    fmt(load.p99_ms, 2),
                    cpu_text + (f" (errors {load.errors})" if load.errors else ""),
                    fmt(load.other_cores, 2),
                ]
            )
        out += ["Throughput and latency (trivial task `module.exports = (x) => x + 1`)", ""]
        out += table(
            [
                "scenario",
                "in flight",
                "done",
                "tasks/s",
                "p50 ms",
                "p99 ms",
                "CPU ms/task client / server / workers",
                "other load",
            ],
            rows,
        )
        out.append("")
    if "zako" in results:
        out.append(f"zako server: {results['zako'][1].get('banner', '')}")
        out.append("")
    cpu = results.get("cpu")
    if cpu:
        base = cpu["runs"].get(1)
        rows = [
            [
                str(w),
                f"{load.completed}",
                fmt(load.rate, 2),
                fmt(load.p50_ms),
                fmt(ratio(load.rate, base.rate) if base else math.nan, 2),
                fmt(ratio(load.rate, base.rate * w) * 100 if base else math.nan, 0),
                fmt(load.cpu_ms_per_op().get("workers"), 1),
                fmt(load.other_cores, 2),
            ]
            for w, load in cpu["runs"].items()
        ]
        out += [
            f"CPU-bound tasks (loop n={cpu['loop_n']:,}: {cpu['task_cpu_ms_inprocess']} ms "
            "CPU in a fresh in-process MiniRacer), 2 tasks in flight per worker",
            "",
        ]
        out += table(
            [
                "workers",
                "done",
                "tasks/s",
                "p50 ms",
                "x 1 worker",
                "efficiency %",
                "worker CPU ms/task",
                "other load",
            ],
            rows,
        )
        out.append("")
    out += peer_table(results.get("peer"), report["params"]["window"])
    out += floor_table(loads_of(results))
    out += reach_table([t for t in tgts if t.issue == 16], floor_tgts)
    out += instructions_table(results.get("instructions"))
    out += caches_table(results.get("caches"))
    if results.get("flood"):
        out += render_flood(results["flood"])
    memory = results.get("memory")
    if memory:

        def mb(snapshot: dict[str, int]) -> str:
            return (
                f"{fmt(snapshot.get('rss', 0) / MB)} (USS {fmt(snapshot.get('uss', 0) / MB)}"
                f", PSS {fmt(snapshot.get('pss', 0) / MB)}"
                f", shared {fmt(snapshot.get('shared', 0) / MB)})"
            )

        rows = [
            [
                when_text,
                mb(memory[when]["server"]),
                "; ".join(mb(w) for w in memory[when]["workers"].values()) or "-",
            ]
            for when, when_text in (
                ("idle", "idle, after start"),
                ("first", f"after {memory['tasks_first']:,} tasks"),
                (
                    "last",
                    f"after {memory['tasks_last']:,} tasks "
                    f"({memory['rest_seconds']:g} s, {memory['rate_per_s']}/s)",
                ),
            )
        ]
        out += [
            f"Memory, MB: RSS (USS = private; PSS = private + this process's share of "
            f"pages it shares; shared = file-backed, mostly libmini_racer.so); "
            f"{memory['workers']} worker(s)",
            "",
        ]
        out += table(["when", "server", "each worker"], rows)
        out.append("")
    cold = results.get("cold")
    if cold:
        out += [
            f"Cold start (exec → health SERVING, {cold['runs']} run(s)): median "
            f"{cold['median_s']:.3f} s, max {cold['max_s']:.3f} s "
            f"(banner after {', '.join(f'{s:.3f}' for s in cold['banner_s'])} s)",
            "",
        ]
    over = results.get("overload")
    if over:
        rows = [
            [
                "unloaded (1 in flight)",
                "-",
                fmt(over["unloaded_p50_ms"], 2),
                fmt(over["unloaded_p99_ms"], 2),
            ],
            [
                f"capacity ({1 + over['queue_capacity']} in flight)",
                fmt(over["capacity_per_s"]),
                "-",
                "-",
            ],
            [
                f"offered {fmt(over['offered_per_s'])}/s: accepted",
                f"{over['accepted']:,}",
                fmt(over["accepted_p50_ms"], 2),
                fmt(over["accepted_p99_ms"], 2),
            ],
            [
                f"offered {fmt(over['offered_per_s'])}/s: rejected",
                f"{over['rejected']:,}",
                fmt(over["rejected_p50_ms"], 2),
                fmt(over["rejected_p99_ms"], 2),
            ],
        ]
        task = (
            f"tasks of {fmt(over['task_cpu_ms'], 1)} ms CPU (loop n={over['task_loop_n']:,})"
            if "task_cpu_ms" in over
            else "trivial tasks"
        )
        out += [
            f"Overload (1 worker, queue capacity {over['queue_capacity']}, 2 x capacity "
            f"offered open-loop on one stream; {task})",
            "",
        ]
        out += table(["", "tasks or /s", "p50 ms", "p99 ms"], rows)
        other = over["other_outcomes"]
        out += [
            f"rejections with a retry hint: {over['rejections_with_retry_hint']:,}/"
            f"{over['rejected']:,}; other outcomes: {other or 'none'}; "
            f"accepted-latency bound (queue + 2) / capacity: "
            f"{fmt(over['accepted_bound_ms'], 1)} ms; other load "
            f"{fmt(over['other_load_cores'], 2)} cores",
            "",
        ]
    for n, issue in enumerate(sorted({t.issue for t in tgts})):
        out += ([""] if n else []) + [f"Targets (issue {issue})", ""]
        out += table(
            ["target", "measured", "ratio", "target", "result"],
            [
                [
                    t.title,
                    t.measured,
                    fmt(t.value, 2) + (t.unit if t.unit == "x" else f" {t.unit}"),
                    t.target_text,
                    t.status,
                ]
                for t in tgts
                if t.issue == issue
            ],
        )
    if report["errors"]:
        out += [
            "",
            "Sections that failed: " + "; ".join(f"{k}: {v}" for k, v in report["errors"].items()),
        ]
    return "\n".join(out)


def jsonable(value: Any) -> Any:
    if isinstance(value, Load):
        return value.to_json()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
