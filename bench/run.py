"""Zako benchmarks: `python -m bench.run [--quick] [--json PATH]` (or `make bench`).

Measures, in one run on this machine (issue 7):
  1. trivial tasks (`module.exports = (x) => x + 1`) through the full stack — SDK, one
     Submit stream, admission, pool, V8 — and on 8 streams, and through unary Run;
  2. baselines: (a) a bare grpc.aio echo service moving the same message bytes with the
     same client shape, (b) mini-racer eval in this process (fresh and reused instance),
     (c) a naive unary server with a fresh MiniRacer per request in a thread pool;
  3. ~50 ms CPU-bound tasks on 1, 2, … workers (up to the effective CPUs);
  4. RSS of the server and of each idle worker; server RSS after N1 vs N2 tasks;
  5. cold start: exec of `python -m zako_server` to health SERVING;
  6. overload: twice the capacity offered to one worker behind a small queue.
Then each target of the issue as a row: measured ratio, target, PASS/MISS.

Servers are subprocesses on 127.0.0.1 port 0; every loop is bounded in count and time.
Results: a Markdown table on stdout, JSON in bench/results/latest.json (latest-quick.json
for --quick) and in --json PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import scenarios
from bench.common import ROOT, Load, machine_info, machine_quiet
from bench.payloads import messages
from bench.scenarios import Params

RESULTS_DIR = ROOT / "bench" / "results"
# The leak check runs last: it is the longest, and RSS hardly depends on other load.
SECTIONS = ("echo", "inprocess", "naive", "zako", "cpu", "cold", "overload", "memory")
QUIET_CORES = 0.15
MB = 1 << 20


@dataclass(frozen=True)
class Target:
    key: str
    title: str
    measured: str      # what the ratio is made of, with figures
    value: float       # the measured ratio (or figure)
    bound: float
    higher_is_better: bool
    unit: str = "x"

    @property
    def status(self) -> str:
        if self.value is None or math.isnan(self.value):
            return "n/a"
        ok = self.value >= self.bound if self.higher_is_better else self.value <= self.bound
        return "PASS" if ok else "MISS"

    @property
    def target_text(self) -> str:
        sign = "≥" if self.higher_is_better else "≤"
        return f"{sign} {self.bound:g}{'' if self.unit == 'x' else ' '}{self.unit}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["value"] = None if self.value is None or math.isnan(self.value) else self.value
        data["status"] = self.status
        data["target"] = self.target_text
        return data


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


# ---- running ----------------------------------------------------------------------------

async def run_sections(params: Params, only: Sequence[str], machine: dict[str, Any],
                       log: Callable[[str], None], profile_dir: Path | None = None,
                       wait_quiet: float = 0.0) -> tuple[dict[str, Any], dict[str, str]]:
    msgs = messages()
    cpus = max(1, math.floor(machine["effective_cpus"]))
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    steps: dict[str, Callable[[], Any]] = {
        "echo": lambda: scenarios.echo_baseline(params, msgs),
        "inprocess": lambda: asyncio.to_thread(scenarios.inprocess_baseline, params),
        "naive": lambda: scenarios.naive_baseline(params),
        "zako": lambda: scenarios.zako_trivial(params, cpus, profile_dir),
        "cpu": lambda: scenarios.zako_cpu_scaling(params, machine["effective_cpus"]),
        "memory": lambda: scenarios.zako_memory(params, cpus),
        "cold": lambda: scenarios.cold_start(params),
        "overload": lambda: scenarios.overload(params),
    }
    for name in SECTIONS:
        if name not in only:
            continue
        waited = time.perf_counter()
        await _wait_quiet(wait_quiet, log)
        wait_quiet = max(wait_quiet - (time.perf_counter() - waited), 0.0)
        log(f"[bench] {name} …")
        t0 = time.perf_counter()
        try:
            results[name] = await steps[name]()
            failed = [load for load in _all_loads({name: results[name]}) if load.errors]
            if failed or (name == "memory" and results[name].get("errors")):
                errors[name] = "; ".join(f"{load.name}: {load.errors} error(s), first: "
                                         f"{load.first_error[:200]}" for load in failed) or \
                    f"{results[name]['errors']} task(s) failed in the leak check"
                log(f"[bench] {name}: {errors[name]}")
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
            log(f"[bench] {name} FAILED: {errors[name]}\n{traceback.format_exc()}")
        log(f"[bench] {name} took {time.perf_counter() - t0:.1f} s")
    return results, errors


async def _wait_quiet(limit: float, log: Callable[[str], None]) -> None:
    """Wait (at most `limit` seconds) until other processes leave the CPUs idle."""
    deadline = time.perf_counter() + limit
    while limit > 0:
        other = await machine_quiet(1.0)
        if other < QUIET_CORES:
            return
        if time.perf_counter() >= deadline:
            log(f"[bench] machine still busy ({other:.2f} cores used by others); going on")
            return
        log(f"[bench] waiting for a quiet machine ({other:.2f} cores used by others)")


def _all_loads(results: dict[str, Any]) -> list[Load]:
    loads = list(loads_of(results).values())
    loads += list(((results.get("cpu") or {}).get("runs") or {}).values())
    return loads


def loads_of(results: dict[str, Any]) -> dict[str, Load]:
    loads: dict[str, Load] = {}
    for key in ("echo", "inprocess", "naive"):
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
        Target("stream_vs_echo", "Trivial tasks, one Submit stream vs echo msgs/s",
               f"{_fmt(rate('zako_stream'))} vs {_fmt(rate('echo_stream'))} /s",
               _ratio(rate("zako_stream"), rate("echo_stream")), 0.5, True),
        Target("unary_vs_echo", "Unary Run p50 vs echo unary p50",
               f"{_fmt(p50('zako_unary'), 2)} vs {_fmt(p50('echo_unary'), 2)} ms",
               _ratio(p50("zako_unary"), p50("echo_unary")), 3.0, False),
        Target("vs_naive", "Throughput vs naive design (one stream vs naive, 8 callers)",
               f"{_fmt(rate('zako_stream'))} vs {_fmt(rate('naive_unary_c8'))} /s",
               _ratio(rate("zako_stream"), rate("naive_unary_c8")), 5.0, True),
    ]
    cpu = results.get("cpu") or {}
    runs = cpu.get("runs", {})
    one, two = runs.get(1), runs.get(2)
    rows.append(Target(
        "cpu_scaling", "CPU-bound ~50 ms tasks, 2 workers vs 1",
        f"{_fmt(two.rate if two else nan)} vs {_fmt(one.rate if one else nan)} /s",
        _ratio(two.rate, one.rate) if one and two else nan, 1.7, True))
    memory = results.get("memory") or {}
    idle = [m["rss"] for when in ("idle", "last")
            for m in (memory.get(when) or {}).get("workers", {}).values()]
    rows.append(Target(
        "worker_rss", "Idle worker RSS (max: fresh and after the load)",
        f"{len(idle)} sample(s); USS {_fmt(_worker_uss(memory) / MB)} MB",
        max(idle) / MB if idle else nan, 60, False, "MB"))
    first = (memory.get("first") or {}).get("server", {}).get("rss")
    last = (memory.get("last") or {}).get("server", {}).get("rss")
    rows.append(Target(
        "server_rss_growth",
        f"Server RSS growth, {memory.get('tasks_first', 0):,} -> "
        f"{memory.get('tasks_last', 0):,} tasks (asked {params.leak_total:,})",
        f"{_fmt(first / MB if first else nan)} -> {_fmt(last / MB if last else nan)} MB",
        (last - first) / first * 100 if first and last else nan, 5, False, "%"))
    cold = results.get("cold") or {}
    rows.append(Target(
        "cold_start", "Cold start to SERVING (median of runs)",
        f"{cold.get('runs', 0)} run(s), max {_fmt(cold.get('max_s', nan), 2)} s",
        cold.get("median_s", nan), 1.5, False, "s"))
    return rows


def _worker_uss(memory: dict[str, Any]) -> float:
    uss = [m.get("uss", 0) for when in ("idle", "last")
           for m in (memory.get(when) or {}).get("workers", {}).values()]
    return max(uss) if uss else math.nan


# ---- the report --------------------------------------------------------------------------

def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    line = lambda cells: "| " + " | ".join(  # noqa: E731
        str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"
    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
            *(line(r) for r in rows)]


def render(report: dict[str, Any], results: dict[str, Any], tgts: list[Target]) -> str:
    m = report["machine"]
    out = [
        f"Zako benchmark ({report['mode']}) — {report['started_at']}, {report['duration_s']:.0f} s",
        f"machine: {m['cpu_count']} CPUs ({m['effective_cpus']:g} effective, "
        f"{m['cpu_model']}), {m['memory_bytes'] / (1 << 30):.1f} GiB; Python {m['python']}, "
        f"grpcio {m['grpcio']}, protobuf {m['protobuf']}, mini-racer {m['mini_racer']}, "
        f"V8 {m['v8']}, zako {m['zako']}",
        f"other processes' load (cores): {_fmt(report['other_load_before'], 2)} before the run,"
        f" at most {_fmt(report['other_load_max'], 2)} during a measurement "
        "(column 'other load'; the figures are only clean near 0)",
        "",
    ]
    if report["other_load_max"] > 0.25:
        out[-1:-1] = ["WARNING: other processes used the CPUs during this run; "
                      "rerun on a quiet machine before quoting the figures"]
    loads = loads_of(results)
    if loads:
        rows = []
        for load in loads.values():
            cpu = load.cpu_ms_per_op()
            cpu_text = " / ".join(_fmt(cpu.get(r), 2) for r in ("client", "server", "workers")
                                  if r in cpu)
            rows.append([load.name, str(load.concurrency), f"{load.completed:,}",
                         _fmt(load.rate), _fmt(load.p50_ms, 2), _fmt(load.p99_ms, 2),
                         cpu_text + (f" (errors {load.errors})" if load.errors else ""),
                         _fmt(load.other_cores, 2)])
        out += ["Throughput and latency (trivial task `module.exports = (x) => x + 1`)", ""]
        out += _table(["scenario", "in flight", "done", "tasks/s", "p50 ms", "p99 ms",
                       "CPU ms/task client / server / workers", "other load"], rows)
        out.append("")
    if "zako" in results:
        out.append(f"zako server: {results['zako'][1].get('banner', '')}")
        out.append("")
    cpu = results.get("cpu")
    if cpu:
        base = cpu["runs"].get(1)
        rows = [[str(w), f"{load.completed}", _fmt(load.rate, 2), _fmt(load.p50_ms),
                 _fmt(_ratio(load.rate, base.rate) if base else math.nan, 2),
                 _fmt(_ratio(load.rate, base.rate * w) * 100 if base else math.nan, 0),
                 _fmt(load.cpu_ms_per_op().get("workers"), 1), _fmt(load.other_cores, 2)]
                for w, load in cpu["runs"].items()]
        out += [f"CPU-bound tasks (loop n={cpu['loop_n']:,}: {cpu['task_cpu_ms_inprocess']} ms "
                "CPU in a fresh in-process MiniRacer), 2 tasks in flight per worker", ""]
        out += _table(["workers", "done", "tasks/s", "p50 ms", "x 1 worker", "efficiency %",
                       "worker CPU ms/task", "other load"], rows)
        out.append("")
    memory = results.get("memory")
    if memory:
        def mb(snapshot: dict[str, int]) -> str:
            return (f"{_fmt(snapshot.get('rss', 0) / MB)} (USS {_fmt(snapshot.get('uss', 0) / MB)}"
                    f", shared {_fmt(snapshot.get('shared', 0) / MB)})")

        rows = [[when_text, mb(memory[when]["server"]),
                 "; ".join(mb(w) for w in memory[when]["workers"].values()) or "-"]
                for when, when_text in (
                    ("idle", "idle, after start"),
                    ("first", f"after {memory['tasks_first']:,} tasks"),
                    ("last", f"after {memory['tasks_last']:,} tasks "
                             f"({memory['rest_seconds']:g} s, {memory['rate_per_s']}/s)"))]
        out += [f"Memory, MB: RSS (USS = private, shared = file-backed, mostly "
                f"libmini_racer.so); {memory['workers']} worker(s)", ""]
        out += _table(["when", "server", "each worker"], rows)
        out.append("")
    cold = results.get("cold")
    if cold:
        out += [f"Cold start (exec → health SERVING, {cold['runs']} run(s)): median "
                f"{cold['median_s']:.3f} s, max {cold['max_s']:.3f} s "
                f"(banner after {', '.join(f'{s:.3f}' for s in cold['banner_s'])} s)", ""]
    over = results.get("overload")
    if over:
        rows = [
            ["unloaded (1 in flight)", "-", _fmt(over["unloaded_p50_ms"], 2),
             _fmt(over["unloaded_p99_ms"], 2)],
            [f"capacity ({1 + over['queue_capacity']} in flight)",
             _fmt(over["capacity_per_s"]), "-", "-"],
            [f"offered {_fmt(over['offered_per_s'])}/s: accepted", f"{over['accepted']:,}",
             _fmt(over["accepted_p50_ms"], 2), _fmt(over["accepted_p99_ms"], 2)],
            [f"offered {_fmt(over['offered_per_s'])}/s: rejected", f"{over['rejected']:,}",
             _fmt(over["rejected_p50_ms"], 2), _fmt(over["rejected_p99_ms"], 2)],
        ]
        out += [f"Overload (1 worker, queue capacity {over['queue_capacity']}, 2 x capacity "
                f"offered open-loop on one stream)", ""]
        out += _table(["", "tasks or /s", "p50 ms", "p99 ms"], rows)
        other = over["other_outcomes"]
        out += [f"rejections with a retry hint: {over['rejections_with_retry_hint']:,}/"
                f"{over['rejected']:,}; other outcomes: {other or 'none'}; "
                f"accepted-latency bound (queue + 2) / capacity: "
                f"{_fmt(over['accepted_bound_ms'], 1)} ms; other load "
                f"{_fmt(over['other_load_cores'], 2)} cores", ""]
    out += ["Targets (issue 7)", ""]
    out += _table(["target", "measured", "ratio", "target", "result"],
                  [[t.title, t.measured,
                    _fmt(t.value, 2) + (t.unit if t.unit == "x" else f" {t.unit}"),
                    t.target_text, t.status] for t in tgts])
    if report["errors"]:
        out += ["", "Sections that failed: " + "; ".join(
            f"{k}: {v}" for k, v in report["errors"].items())]
    return "\n".join(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Load):
        return value.to_json()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


# ---- entry point --------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="tiny counts (a smoke run: checks the harness, not the figures)")
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="also write the JSON results here")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, metavar="DIR",
                        help="where latest.json (full) or latest-quick.json goes "
                             "(default: bench/results, which git ignores)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help=f"comma-separated sections to run (default: all of {SECTIONS})")
    parser.add_argument("--py-spy", type=Path, metavar="DIR", dest="py_spy",
                        help="record py-spy profiles (collapsed stacks) of the server and its "
                             "workers during the one-stream and unary Zako runs into DIR")
    parser.add_argument("--wait-quiet", type=float, metavar="SECONDS",
                        help="before each section wait for other processes to leave the CPUs "
                             "idle, SECONDS in all (default: 60 in full mode, 0 with --quick)")
    parser.add_argument("--leak-seconds", type=float, default=150.0,
                        help="full mode: time bound of the N1→N2 leak check (default 150)")
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    return args


async def amain(args: argparse.Namespace) -> int:
    params = Params.quick_mode() if args.quick else Params.full_mode(args.leak_seconds)
    only = args.only.split(",")

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    machine = machine_info()
    other_before = await machine_quiet(0.5 if args.quick else 2.0)
    if other_before > 0.25:
        log(f"[bench] WARNING: other processes keep {other_before:.2f} cores busy")
    if args.py_spy is not None:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    wait_quiet = args.wait_quiet if args.wait_quiet is not None else (0 if args.quick else 60)
    results, errors = await run_sections(params, only, machine, log, args.py_spy, wait_quiet)
    other_loads = [load.other_cores for load in _all_loads(results)
                   if not math.isnan(load.other_cores)]
    report: dict[str, Any] = {
        "command": "python -m bench.run" + (" --quick" if args.quick else ""),
        "argv": sys.argv[1:],
        "mode": "quick" if args.quick else "full",
        "started_at": started.isoformat(timespec="seconds"),
        "duration_s": time.perf_counter() - t0,
        "machine": machine,
        "params": asdict(params),
        "message_bytes": messages().sizes(),
        "sections": list(only),
        "errors": errors,
        "other_load_before": other_before,
        "other_load_max": max([other_before, *other_loads]),
    }
    tgts = targets(results, params)
    table = render(report, results, tgts)
    print(table, flush=True)
    zako = results.get("zako")
    report["results"] = _jsonable({**results, "zako": zako[0] if zako else None,
                                   "zako_info": zako[1] if zako else None})
    report["targets"] = [t.to_json() for t in tgts]
    report["table"] = table
    text = json.dumps(report, indent=2, sort_keys=False, default=str)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    latest = "latest-quick.json" if args.quick else "latest.json"
    (args.results_dir / latest).write_text(text + "\n")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 1 if errors else 0


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
